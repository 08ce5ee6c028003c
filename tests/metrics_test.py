"""Measurement helpers: SSIM's defining properties and the wavelength of known periodic patterns."""

import numpy as np
import pytest

from nst_jax import metrics


def stripes(period: float, size: int = 96) -> np.ndarray:
  x = np.arange(size)
  g = 0.5 + 0.4 * np.sin(2 * np.pi * x / period)
  return np.repeat(np.tile(g, (size, 1))[..., None], 3, axis=-1)


def test_ssim_identity_symmetry_and_monotone_in_noise():
  rng = np.random.default_rng(0)
  a = metrics.gray(stripes(12.0)) + 0.05 * rng.standard_normal((96, 96))
  assert metrics.ssim(a, a) == pytest.approx(1.0)
  noisy1 = a + 0.05 * rng.standard_normal(a.shape)
  noisy2 = a + 0.2 * rng.standard_normal(a.shape)
  assert metrics.ssim(a, noisy1) == pytest.approx(metrics.ssim(noisy1, a))
  assert 1.0 > metrics.ssim(a, noisy1) > metrics.ssim(a, noisy2) > 0.0
  # Constant images of different brightness: only the luminance term differs.
  c1, c2 = 1e-4, 9e-4
  want = (2 * 0.3 * 0.6 + c1) / (0.3**2 + 0.6**2 + c1)
  assert metrics.ssim(np.full((32, 32), 0.3), np.full((32, 32), 0.6)) == pytest.approx(want)
  del c2


@pytest.mark.parametrize("period", [4.0, 8.0, 16.0])
def test_dominant_wavelength_of_stripes(period):
  assert metrics.dominant_wavelength(stripes(period)) == pytest.approx(period, rel=0.15)


@pytest.mark.parametrize("period", [5.0, 10.0, 20.0])
def test_dominant_wavelength_along_rows_of_a_strip(period):
  strip = stripes(period, size=128)[:24]  # 24 rows x 128 columns, stripes varying along the rows
  assert metrics.dominant_wavelength(strip, axis=1) == pytest.approx(period, rel=0.2)


@pytest.mark.parametrize("period", [4.0, 8.0])
def test_stroke_wavelength_measures_only_where_the_content_is_flat(period):
  rng = np.random.default_rng(3)
  content = np.full((64, 128, 3), 0.5)
  content[:, 64:] += 0.2 * rng.standard_normal((64, 64, 3))  # the photo's own detail in the right half
  image = np.concatenate([stripes(period, size=64)[:, :64], stripes(3.0, size=64)[:, :64]], axis=1)
  # Only the left half's tiles count: the 3-px stripes over the textured content are left out.
  assert metrics.stroke_wavelength(image, content, tile=32) == pytest.approx(period, rel=0.15)
  # The same tiles alone give the same number, measured by the whole-image wavelength of each flat tile.
  tiles = [image[i:i + 32, j:j + 32] for i in (0, 32) for j in (0, 32)]
  assert metrics.stroke_wavelength(image, content, tile=32) == pytest.approx(
      np.mean([metrics.dominant_wavelength(t) for t in tiles]), rel=0.05)
  assert np.isnan(metrics.stroke_wavelength(image, 0.5 + 0.2 * rng.standard_normal(content.shape), tile=32))
  with pytest.raises(ValueError, match="one size"):
    metrics.stroke_wavelength(image, content[:32])


def test_texture_energy_map_is_blockwise_high_pass_rms():
  rng = np.random.default_rng(1)
  image = np.full((80, 48, 3), 0.4)
  image[:48] += np.linspace(0, 0.3, 48)[None, :, None]  # smooth shading: no texture
  image[48:] += 0.1 * rng.standard_normal((32, 48, 3))    # texture in the lowest 32 rows
  energy = metrics.texture_energy_map(image, block=16)
  assert energy.shape == (5, 3)
  assert np.all(energy[:2] < 0.01) and np.all(energy[3:] > 0.1)  # block row 2 borders the texture
  # An independent reference for one block: RMS over the block of the summed squared high-pass.
  from scipy import ndimage
  high = image - ndimage.gaussian_filter(image, (2.0, 2.0, 0), mode="reflect")
  want = np.sqrt(np.mean(np.sum(high[64:80, 16:32] ** 2, axis=-1)))
  np.testing.assert_allclose(energy[4, 1], want, rtol=1e-12)


def test_flat_fraction_counts_the_untextured_share():
  rng = np.random.default_rng(2)
  style = 0.5 + 0.1 * rng.standard_normal((64, 64, 3))
  image = np.full((64, 64, 3), 0.5)
  assert metrics.flat_fraction(image, style) == 1.0
  image[:, :16] += 0.1 * rng.standard_normal((64, 16, 3))  # a quarter of the picture textured like the style
  assert metrics.flat_fraction(image, style) == pytest.approx(0.75)
  assert metrics.flat_fraction(style, style) == 0.0


def test_palette_distance_ignores_arrangement_and_measures_shifts():
  rng = np.random.default_rng(3)
  style = rng.uniform(0.2, 0.8, (40, 40, 3))
  shuffled = rng.permutation(style.reshape(-1, 3)).reshape(20, 80, 3)
  assert metrics.palette_distance(shuffled, style) == pytest.approx(0.0, abs=1e-12)
  # Adding d to every channel moves each projection by d·(v1+v2+v3): the distance is d times mean |sum of v|.
  v = np.random.default_rng(0).normal(size=(3, 64))
  v /= np.linalg.norm(v, axis=0, keepdims=True)
  assert metrics.palette_distance(style + 0.1, style) == pytest.approx(0.1 * np.mean(np.abs(v.sum(0))), rel=1e-9)


def test_yiq_chroma_error_sees_chroma_not_luminance():
  rng = np.random.default_rng(4)
  content = rng.uniform(0.2, 0.8, (16, 16, 3))
  brighter = content + 0.1  # a gray offset changes Y only
  assert metrics.yiq_chroma_error(brighter, content) < 1e-6
  tinted = content + np.array([0.02, 0.0, 0.0])
  assert metrics.yiq_chroma_error(tinted, content) == pytest.approx(0.02 * 0.595716, rel=1e-4)


def _stripes(h, w, period, angle):
  y, x = np.mgrid[:h, :w]
  return 0.5 + 0.4 * np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period)


@pytest.fixture(scope="module")
def look_images():
  """A 'photo' (a smooth sky above fine vertical texture), a 'painting' of diagonal strokes, and the photo painted
  over with those strokes everywhere, in colour."""
  rng = np.random.default_rng(0)
  h, w = 128, 128
  photo = np.zeros((h, w))
  photo[:64] = np.linspace(0.3, 0.7, w)[None, :]  # a smooth sky
  photo[64:] = 0.5 + 0.1 * rng.standard_normal((64, w))  # fine texture below
  strokes = _stripes(160, 160, 12.0, np.pi / 4)
  painted = 0.3 * photo + 0.7 * _stripes(h, w, 12.0, np.pi / 4)
  rgb = lambda g, tint: np.clip(g[..., None] * np.asarray(tint)[None, None], 0, 1)  # noqa: E731
  return rgb(photo, (1, 1, 1)), rgb(strokes, (0.9, 0.7, 0.3)), rgb(painted, (0.9, 0.7, 0.3))


def test_style_coverage_separates_a_recoloured_photo_from_a_painted_one(look_images):
  photo, painting, painted = look_images
  cast = np.clip(photo ** 1.5 * np.array([0.9, 0.7, 0.3]), 0, 1)  # another palette and tone curve, no marks
  assert metrics.style_coverage(cast, photo, painting, tile=16) < 0.1
  assert metrics.style_coverage(photo, photo, painting, tile=16) == 0.0
  assert metrics.style_coverage(painted, photo, [painting], tile=16) > 0.9


def test_style_coverage_counts_the_painted_share(look_images):
  photo, painting, painted = look_images
  half = photo.copy()
  half[:, :64] = painted[:, :64]
  assert metrics.style_coverage(half, photo, painting, tile=16) == pytest.approx(0.5, abs=0.1)


def test_style_coverage_ignores_marks_below_the_floor(look_images):
  photo, painting, _ = look_images
  faint = photo + 0.002 * _stripes(128, 128, 3.0, 0.0)[..., None]  # faint fringes over everything
  assert metrics.style_coverage(faint, photo, painting, tile=16) < 0.1
