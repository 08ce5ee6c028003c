"""Image measurements used by tests and experiments.

SSIM, dominant texture wavelength, and what the eye sees of a stylised image: the size of its strokes where the
photo is flat (`stroke_wavelength`), how much of it is left flat (`flat_fraction`), how close its colours are to the
style's (`palette_distance`), its chroma (`yiq_chroma_error`) and how much of it carries the style's marks
(`style_coverage`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from nst_jax.losses import color

_LUMA = np.array([0.299, 0.587, 0.114])


def gray(image: np.ndarray) -> np.ndarray:
  """(H, W) luma (ITU-R BT.601), float64, of an (H, W, 3) RGB image."""
  return np.asarray(image, np.float64) @ _LUMA


def ssim(a: np.ndarray, b: np.ndarray, *, data_range: float = 1.0, sigma: float = 1.5) -> float:
  """Mean structural similarity of two gray images (Wang et al. 2004).

  Gaussian window of `sigma` (1.5), K1 0.01, K2 0.03, statistics with the unbiased (N-1) normalisation over the
  11x11 window, as in the reference code."""
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  if a.shape != b.shape or a.ndim != 2:
    raise ValueError(f"ssim needs two gray images of one shape, got {a.shape} and {b.shape}")
  c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
  blur = lambda x: ndimage.gaussian_filter(x, sigma, truncate=3.5, mode="reflect")
  n = 49.0  # effective sample size used for the unbiased correction (7x7 core of the 11x11 window)
  correction = n / (n - 1.0)
  mu_a, mu_b = blur(a), blur(b)
  var_a = (blur(a * a) - mu_a**2) * correction
  var_b = (blur(b * b) - mu_b**2) * correction
  cov = (blur(a * b) - mu_a * mu_b) * correction
  s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
  crop = 5  # ignore the window's half-width at the border, as the reference implementation does
  return float(s[crop:-crop, crop:-crop].mean()) if min(a.shape) > 2 * crop else float(s.mean())


def radial_power_spectrum(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(wavelengths in pixels, radially averaged power) of the mean-removed, Hann-windowed gray image."""
  g = gray(image) if np.ndim(image) == 3 else np.asarray(image, np.float64)
  g = g - g.mean()
  h, w = g.shape
  g = g * np.outer(np.hanning(h), np.hanning(w))
  power = np.abs(np.fft.fftshift(np.fft.fft2(g))) ** 2
  fy = np.fft.fftshift(np.fft.fftfreq(h))
  fx = np.fft.fftshift(np.fft.fftfreq(w))
  radius = np.hypot(*np.meshgrid(fy, fx, indexing="ij"))
  bins = np.linspace(0, 0.5, min(h, w) // 2 + 1)
  which = np.digitize(radius.ravel(), bins)
  sums = np.bincount(which, power.ravel(), minlength=len(bins) + 1)[1:len(bins)]
  counts = np.bincount(which, minlength=len(bins) + 1)[1:len(bins)]
  centers = 0.5 * (bins[:-1] + bins[1:])
  keep = (counts > 0) & (centers > 0)
  return 1.0 / centers[keep], sums[keep] / counts[keep]


def dominant_wavelength(image: np.ndarray, *, min_wavelength: float = 2.5, axis: int | None = None) -> float:
  """Power-weighted mean wavelength (pixels) of an image's spectrum, ignoring near-Nyquist noise and the DC term.

  A weighted mean is steadier than the arg-max peak for painted, non-periodic textures. axis=None: radially averaged
  2-D spectrum (wavelengths up to half the shorter side). axis=1 (or 0): the 1-D spectrum along rows (columns),
  averaged over the other axis, which measures long, thin strips of an image."""
  if axis is None:
    wavelengths, power = radial_power_spectrum(image)
    keep = (wavelengths >= min_wavelength) & (wavelengths <= min(np.shape(image)[:2]) / 2)
    return float(np.sum(wavelengths[keep] * power[keep]) / np.sum(power[keep]))
  g = gray(image) if np.ndim(image) == 3 else np.asarray(image, np.float64)
  g = np.moveaxis(g, axis, -1)
  g = g - g.mean(axis=-1, keepdims=True)
  power = (np.abs(np.fft.rfft(g * np.hanning(g.shape[-1]), axis=-1)) ** 2).mean(axis=0)
  freqs = np.fft.rfftfreq(g.shape[-1])
  keep = (freqs > 0) & (freqs <= 1.0 / min_wavelength)
  return float(np.sum(power[keep] / freqs[keep]) / np.sum(power[keep]))


def texture_energy_map(image: np.ndarray, *, block: int = 16, sigma: float = 2.0) -> np.ndarray:
  """Per-block RMS of the image's high-pass (the image minus its Gaussian blur of `sigma` px, all three channels).

  (H // block, W // block): the local amount of stroke, texture and edge. Smooth shading and flat colour give ~0
  whatever their brightness."""
  image = np.asarray(image, np.float64)
  if image.ndim == 2:
    image = image[..., None]
  high = image - ndimage.gaussian_filter(image, (sigma, sigma, 0), mode="reflect")
  energy = np.sum(np.square(high), axis=-1)
  h, w = energy.shape[0] // block, energy.shape[1] // block
  if h == 0 or w == 0:
    raise ValueError(f"texture_energy_map needs an image of at least {block} px per side, got {image.shape[:2]}")
  blocks = energy[:h * block, :w * block].reshape(h, block, w, block).mean(axis=(1, 3))
  return np.sqrt(blocks)


def stroke_wavelength(image: np.ndarray, content: np.ndarray, *, tile: int | None = None, threshold: float = 0.02,
                      min_wavelength: float = 2.5) -> float:
  """Power-weighted mean wavelength (pixels) of `image`'s texture where `content` (same height and width) is flat.

  The size of the marks a style painted, without the photo's own layout (roofs, horizon, bridge), which dominates
  `dominant_wavelength` of a whole stylised photo. The image is cut into `tile`-px squares (default: an eighth of its
  long side, at least 16); those whose content texture energy (`texture_energy_map`) is below `threshold` are kept,
  their radially averaged power spectra (`radial_power_spectrum`) averaged, and the mean wavelength taken between
  `min_wavelength` and tile / 2. NaN when the content has no flat tile."""
  image, content = np.asarray(image), np.asarray(content)
  if image.shape[:2] != content.shape[:2]:
    raise ValueError(f"stroke_wavelength needs image and content of one size, got {image.shape} and {content.shape}")
  tile = tile or max(16, max(image.shape[:2]) // 8)
  flat = texture_energy_map(content, block=tile) < threshold
  g = gray(image) if image.ndim == 3 else np.asarray(image, np.float64)
  spectra = [radial_power_spectrum(g[i * tile:(i + 1) * tile, j * tile:(j + 1) * tile])
             for i, j in zip(*np.nonzero(flat))]
  if not spectra:
    return float("nan")
  wavelengths = spectra[0][0]
  power = np.mean([p for _, p in spectra], axis=0)
  keep = (wavelengths >= min_wavelength) & (wavelengths <= tile / 2)
  return float(np.sum(wavelengths[keep] * power[keep]) / np.sum(power[keep]))


def flat_fraction(image: np.ndarray, style: np.ndarray, *, block: int = 16, threshold: float = 0.25) -> float:
  """Fraction of the image's blocks left flat: texture energy below `threshold` times the style's median block.

  `texture_energy_map` of both; give the style at the scale it was transferred at. The share of the picture left
  un-styled where a painting would carry strokes: 0 for an image textured everywhere like the style."""
  reference = float(np.median(texture_energy_map(style, block=block)))
  return float(np.mean(texture_energy_map(image, block=block) < threshold * reference))


def palette_distance(image: np.ndarray, style: np.ndarray, *, directions: int = 64, quantiles: int = 256,
                     seed: int = 0) -> float:
  """Sliced 1-Wasserstein distance between the RGB pixel distributions of `image` and `style` (any sizes).

  The mean over `directions` fixed random unit vectors of the mean absolute difference of the projected pixels'
  `quantiles` quantiles. 0 for the same palette in any arrangement; in [0, 1]-RGB units."""
  a = np.asarray(image, np.float64).reshape(-1, 3)
  b = np.asarray(style, np.float64).reshape(-1, 3)
  v = np.random.default_rng(seed).normal(size=(3, directions))
  v /= np.linalg.norm(v, axis=0, keepdims=True)
  q = (np.arange(quantiles) + 0.5) / quantiles
  return float(np.mean(np.abs(np.quantile(a @ v, q, axis=0) - np.quantile(b @ v, q, axis=0))))


def yiq_chroma_error(image: np.ndarray, reference: np.ndarray, *, quantile: float = 1.0) -> float:
  """The `quantile` (default: the largest) of the per-pixel |ΔI| and |ΔQ| (YIQ) of two RGB images, in [0, 1] units.

  Whether `image` kept `reference`'s colours (luminance-only transfer). A quantile below 1 ignores the few pixels
  where clipping to [0, 1] had to move a saturated colour."""
  yiq = lambda x: np.asarray(color.rgb_to_yiq(np.asarray(x, np.float32)), np.float64)
  diff = np.abs(yiq(image)[..., 1:] - yiq(reference)[..., 1:])
  return float(np.quantile(diff, quantile))


TEXTURE_SIGMAS = (1.0, 2.0, 4.0, 8.0)
ORIENTATION_BINS = 6
DESCRIPTOR_SIZE = len(TEXTURE_SIGMAS) + ORIENTATION_BINS


def tile_energies(image: np.ndarray, *, tile: int = 32) -> np.ndarray:
  """(H // tile, W // tile, 10) local texture energies of an image's luma, divided by its standard deviation.

  Colour and overall contrast are left out. For each tile: the mean energy of four band-pass bands (differences of
  Gaussians of sigma s and 2s, s = 1, 2, 4, 8 px: fine texture up to strokes and shapes of ~30 px) and the mean
  gradient magnitude in six orientation bins (modulo 180 degrees)."""
  y = gray(image) if np.ndim(image) == 3 else np.asarray(image, np.float64)
  y = (y - y.mean()) / (y.std() + 1e-3)
  h, w = y.shape[0] // tile, y.shape[1] // tile
  if h == 0 or w == 0:
    raise ValueError(f"tile_energies needs an image of at least {tile} px per side, got {y.shape}")

  def per_tile(x: np.ndarray) -> np.ndarray:
    return x[:h * tile, :w * tile].reshape(h, tile, w, tile).mean(axis=(1, 3))

  blurred = {s: ndimage.gaussian_filter(y, s, mode="reflect") for s in TEXTURE_SIGMAS + (2 * TEXTURE_SIGMAS[-1],)}
  bands = [per_tile(np.square(blurred[s] - blurred[2 * s] if 2 * s in blurred
                              else blurred[s] - ndimage.gaussian_filter(y, 2 * s, mode="reflect")))
           for s in TEXTURE_SIGMAS]
  gy, gx = np.gradient(blurred[1.0])
  magnitude = np.hypot(gx, gy)
  which = np.minimum((np.mod(np.arctan2(gy, gx), np.pi) / np.pi * ORIENTATION_BINS).astype(int),
                     ORIENTATION_BINS - 1)
  orientations = [per_tile(np.where(which == k, magnitude, 0.0)) for k in range(ORIENTATION_BINS)]
  return np.stack(bands + orientations, axis=-1)


def texture_descriptors(energies: np.ndarray, floors: np.ndarray) -> np.ndarray:
  """(N, 10) descriptors of `tile_energies` rows, with marks fainter than `floors` counted as flat.

  log10(band energy + floor) per band, and each orientation bin's share of the gradient times
  log10(1 + total gradient / floor), so that marks fainter than the floors (given per band and for the gradient,
  e.g. a tenth of a style's median) count as flat and a flat tile has no orientation."""
  e = energies.reshape(-1, DESCRIPTOR_SIZE)
  nb = len(TEXTURE_SIGMAS)
  bands = np.log10(e[:, :nb] + floors[:nb])
  total = e[:, nb:].sum(axis=1, keepdims=True)
  orientations = e[:, nb:] / (total + 1e-12) * np.log10(1.0 + total / floors[nb])
  return np.concatenate([bands, orientations], axis=1)


def style_coverage(image: np.ndarray, content: np.ndarray, styles: list[np.ndarray] | np.ndarray, *,
                   tile: int = 32, floor: float = 0.1) -> float:
  """Share of the picture painted with the style's marks, in [0, 1].

  The fraction of `image`'s tiles whose texture descriptor (`texture_descriptors`: band energies and stroke
  orientations of the luma, colour and contrast left out) is nearer to some tile of the style(s) than to the
  content's own tile at the same place. A recoloured photo keeps the content's texture in every tile (0); a painting
  laid over the whole photo, sky and water included, gives tiles that look like the painting's (towards 1); faint
  fringes or noise over a flat sky stay below the floors (`floor` times the styles' median tile energies) and count
  as unpainted. Give `styles` at the scale they were transferred at; `image` and `content` of one size. Descriptor
  components are scaled by their spread over the style and content tiles, so that each counts alike."""
  if np.shape(image)[:2] != np.shape(content)[:2]:
    raise ValueError(f"style_coverage needs image and content of one size, got {np.shape(image)}, {np.shape(content)}")
  styles = [styles] if isinstance(styles, np.ndarray) and styles.ndim == 3 else list(styles)
  style_e = np.concatenate([tile_energies(x, tile=tile).reshape(-1, DESCRIPTOR_SIZE) for x in styles])
  nb = len(TEXTURE_SIGMAS)
  floors = floor * np.append(np.median(style_e[:, :nb], axis=0), np.median(style_e[:, nb:].sum(axis=1)))
  r = texture_descriptors(tile_energies(image, tile=tile), floors)
  c = texture_descriptors(tile_energies(content, tile=tile), floors)
  s = texture_descriptors(style_e, floors)
  scale = np.std(np.concatenate([s, c]), axis=0) + 1e-6
  r, c, s = r / scale, c / scale, s / scale
  to_content = np.linalg.norm(r - c, axis=1)
  to_style = np.min(np.linalg.norm(r[:, None, :] - s[None, :, :], axis=2), axis=1)
  return float(np.mean(to_style < to_content))
