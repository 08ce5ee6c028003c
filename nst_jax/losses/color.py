"""Colour control of Gatys et al. (2017), "Controlling Perceptual Factors in Neural Style Transfer", section 5.

Two ways to keep the content image's colours while transferring a style:
  luminance  Transfer on luminance only: the network sees gray images (Y replicated to R=G=B), the style's
             luminance is first matched to the content's mean and std, and the result's Y is recombined with the
             content's I and Q chroma channels (YIQ colour space, NTSC/FCC matrix).
  histogram  Before transfer, the style image's colours are mapped linearly so that its per-channel mean and 3x3
             colour covariance equal the content's: x' = A (x - mu_s) + mu_t, with A = L_t L_s^-1 (Cholesky,
             L L^T = Sigma) or A = Sigma_t^1/2 Sigma_s^-1/2 (symmetric square roots, as in Image Analogies).

Images are (H, W, 3) float RGB in [0, 1]. The YIQ functions and `luminance_image`/`combine_luminance` are jnp and
jittable; the statistics-matching functions work in float64 NumPy (a handful of 3x3 matrices, run once per image)
and return float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.errors import NSTError

COLOR_MODES = ("none", "luminance", "histogram")
STYLE_COLOR_MODES = ("auto", "on", "off")
START_COLOR_METHODS = ("moments", "distribution")  # how `match_style_mixture` moves colours
MAX_STYLE_SAMPLES = 1 << 16  # style pixels per region that `match_region_distributions` matches

_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                        [0.595716, -0.274453, -0.321263],
                        [0.211456, -0.522591, 0.311135]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)
# The I and Q rows sum to zero and the Y row to one, so the inverse's Y column is (1, 1, 1) (up to rounding):
# changing Y at fixed I, Q adds the same amount to R, G and B. `combine_luminance` relies on this.
_Y_COLUMN = _YIQ_TO_RGB[:, 0]


def _apply_matrix(matrix: np.ndarray, image: jax.Array) -> jax.Array:
  # HIGHEST: on GPUs the default float32 matmul precision may be TF32 (~1e-3 relative), far too coarse for a
  # colour conversion that must round-trip to 1e-6.
  return jnp.einsum("...c,dc->...d", image, jnp.asarray(matrix, jnp.float32),
                    precision=jax.lax.Precision.HIGHEST)


def rgb_to_yiq(image: jax.Array) -> jax.Array:
  """(..., 3) RGB to (..., 3) YIQ (NTSC, FCC matrix). Jittable."""
  return _apply_matrix(_RGB_TO_YIQ, jnp.asarray(image, jnp.float32))


def yiq_to_rgb(yiq: jax.Array) -> jax.Array:
  """(..., 3) YIQ to (..., 3) RGB with the exact inverse of the FCC matrix; no clipping. Jittable."""
  return _apply_matrix(_YIQ_TO_RGB, jnp.asarray(yiq, jnp.float32))


def _luminance(image: jax.Array) -> jax.Array:
  return _apply_matrix(_RGB_TO_YIQ[:1], jnp.asarray(image, jnp.float32))[..., 0]


def luminance_image(image: jax.Array) -> jax.Array:
  """A gray (..., 3) image with R = G = B = Y of an RGB image: what the network sees in luminance mode. Jittable."""
  y = _luminance(image)
  return jnp.stack([y, y, y], axis=-1)


def match_luminance(style: np.ndarray, content: np.ndarray, *, eps: float = 1e-5,
                    clip: bool = False) -> np.ndarray:
  """Gatys et al. (2017)'s luminance matching of a style to a content, as a gray RGB image.

  l_s' = sigma_c / sigma_s (l_s - mu_s) + mu_c with l the YIQ luma and mu, sigma its mean and std. Without `clip`
  the result may leave [0, 1]; clipping would change the matched mean and std, so it is the caller's choice. A flat
  style (sigma_s < eps) becomes flat at mu_c instead of dividing by zero."""
  l_s = np.asarray(_luminance(style), np.float64)
  l_c = np.asarray(_luminance(content), np.float64)
  sigma_s, sigma_c = l_s.std(), l_c.std()
  scale = sigma_c / sigma_s if sigma_s >= eps else 0.0
  matched = scale * (l_s - l_s.mean()) + l_c.mean()
  if clip:
    matched = np.clip(matched, 0.0, 1.0)
  return np.repeat(matched[..., None], 3, axis=-1).astype(np.float32)


def colors_kept_inputs(content: np.ndarray, styles: list[np.ndarray], mode: str
                       ) -> tuple[np.ndarray, list[np.ndarray]]:
  """The (content, styles) a feed-forward method sees under the colour-preservation `mode`.

  'histogram' gives each style the content's colour distribution (`match_color_histogram`); 'luminance' turns the
  content and the styles into gray images, each style's luma matched to the content's (`match_luminance`), and the
  caller recombines the method's result with the content's chroma (`combine_luminance`); 'none' changes nothing.
  Another mode raises `NSTError`."""
  if mode not in COLOR_MODES:
    raise NSTError(f"`preserve_colors` must be one of {', '.join(COLOR_MODES)}, got {mode!r}")
  if mode == "histogram":
    return content, [match_color_histogram(s, content, clip=True) for s in styles]
  if mode == "luminance":
    return np.asarray(luminance_image(content)), [match_luminance(s, content, clip=True) for s in styles]
  return content, styles


def combine_luminance(*, stylized: jax.Array, content: jax.Array) -> jax.Array:
  """The RGB image with the luma Y of `stylized` and the chroma I, Q of `content`, inside [0, 1]. Jittable.

  Plain "convert, then clip to [0, 1]" shifts the hue wherever the new Y with the old chroma lies out of gamut (a
  dark content pixel made bright, ...), which in stylised images is common. Instead, since changing Y at fixed
  chroma moves R, G, B together, each pixel's Y is clamped to the interval that keeps all three channels in [0, 1];
  that interval contains the content's own Y (the content is in gamut), so it is never empty. Chroma is then exact;
  only the luminance of out-of-gamut pixels moves, by the least amount. The final clip only removes float rounding
  (and handles a content image that is itself outside [0, 1])."""
  y = _luminance(stylized)
  content_yiq = rgb_to_yiq(content)
  # The RGB the content's chroma contributes on top of Y * (1, 1, 1).
  chroma_rgb = _apply_matrix(_YIQ_TO_RGB[:, 1:], content_yiq[..., 1:])
  y_low = -jnp.min(chroma_rgb, axis=-1)
  y_high = 1.0 - jnp.max(chroma_rgb, axis=-1)
  y = jnp.clip(y, y_low, jnp.maximum(y_low, y_high))
  rgb = y[..., None] * jnp.asarray(_Y_COLUMN, jnp.float32) + chroma_rgb
  return jnp.clip(rgb, 0.0, 1.0)


def _mean_cov(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  pixels = np.asarray(image, np.float64).reshape(-1, 3)
  mean = pixels.mean(axis=0)
  centered = pixels - mean
  return mean, centered.T @ centered / len(pixels)


def _sqrt_and_inverse_sqrt(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  values, vectors = np.linalg.eigh(cov)
  values = np.maximum(values, np.finfo(np.float64).tiny)  # eps*I makes them positive; guard against rounding
  return (vectors * np.sqrt(values)) @ vectors.T, (vectors / np.sqrt(values)) @ vectors.T


def histogram_transform(source: np.ndarray, target: np.ndarray, *,
                        method: Literal["cholesky", "eigen"] = "cholesky",
                        eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
  """The affine colour map (A, b), float64, that gives `source`'s pixels the mean and covariance of `target`'s.

  x' = A x + b with A = L_t L_s^-1 ("cholesky", L L^T = Sigma) or Sigma_t^1/2 Sigma_s^-1/2 ("eigen"). Eigenvalues
  of both covariances below eps are raised to eps, so that a gray or flat image (singular covariance) still gives a
  finite A while ordinary images, whose colour variances are all above eps, are matched exactly."""
  if method not in ("cholesky", "eigen"):
    raise ValueError(f"method must be 'cholesky' or 'eigen', not {method!r}")
  mu_s, cov_s = _mean_cov(source)
  mu_t, cov_t = _mean_cov(target)
  cov_s = _floor_eigenvalues(cov_s, eps)
  cov_t = _floor_eigenvalues(cov_t, eps)
  if method == "cholesky":
    l_s, l_t = np.linalg.cholesky(cov_s), np.linalg.cholesky(cov_t)
    a = l_t @ np.linalg.inv(l_s)
  else:
    a = _sqrt_and_inverse_sqrt(cov_t)[0] @ _sqrt_and_inverse_sqrt(cov_s)[1]
  return a, mu_t - a @ mu_s


def _weighted_mean_cov(pixels: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  weights = weights / weights.sum()
  mean = weights @ pixels
  centered = pixels - mean
  return mean, (centered * weights[:, None]).T @ centered


def match_region_colors(content: np.ndarray, style: np.ndarray, *, content_masks: np.ndarray,
                        style_masks: np.ndarray, eps: float = 1e-4) -> np.ndarray:
  """`content` with each region's colours moved to the matching style region's mean and 3x3 covariance.

  Each region's pixels are mapped by x' = A_r (x - mu_c) + mu_s with the optimal-transport map between the two
  Gaussians, A_r = Sigma_c^-1/2 (Sigma_c^1/2 Sigma_s Sigma_c^1/2)^1/2 Sigma_c^-1/2 (Pitié and Kokaram 2007: of all
  linear maps that match the moments, the one that moves colours least, so hues are not rotated). The maps are
  blended by the content masks, so a pixel on a soft region border takes the mask-weighted mix; a region empty in
  either image keeps its colours.

  Args:
    content: (H, W, 3) RGB in [0, 1].
    style: (h, w, 3) RGB in [0, 1].
    content_masks: (R, H, W) soft region masks of the content, summing to 1 at every pixel.
    style_masks: (R, h, w) the same regions in the style.
    eps: floor of each covariance's eigenvalues.

  Returns:
    (H, W, 3) float32, not clipped (the caller decides).
  """
  def moments_map(c_pixels, c_weight, s_pixels, s_weight):
    mu_c, cov_c = _weighted_mean_cov(c_pixels, c_weight)
    mu_s, cov_s = _weighted_mean_cov(s_pixels, s_weight)
    root_c, inverse_root_c = _sqrt_and_inverse_sqrt(_floor_eigenvalues(cov_c, eps))
    middle = _sqrt_and_inverse_sqrt(root_c @ _floor_eigenvalues(cov_s, eps) @ root_c)[0]
    a = inverse_root_c @ middle @ inverse_root_c
    return (c_pixels - mu_c) @ a.T + mu_s
  return _blend_region_maps(content, style, content_masks, style_masks, moments_map)


def match_region_chroma(image: np.ndarray, style: np.ndarray, *, content_masks: np.ndarray,
                        style_masks: np.ndarray, eps: float = 1e-6) -> np.ndarray:
  """`image` with each region's YIQ chroma (I, Q) given the matching style region's mean and std; luma untouched.

  Per region r and chroma channel: c' = (c − mean_r) / std_r · std_s + mean_s, the maps blended by the content
  masks (`match_region_colors`' rules for soft borders and empty regions). A gray style region (chroma 0) makes its
  content region gray exactly, so no tint survives where the target has none.

  Args:
    image: (H, W, 3) RGB.
    style: (h, w, 3) RGB.
    content_masks: (R, H, W) soft region masks of `image`, summing to 1 at every pixel.
    style_masks: (R, h, w) the same regions in the style.
    eps: floor of the image region's chroma std.

  Returns:
    (H, W, 3) float32, not clipped.
  """
  to_yiq = lambda x: np.asarray(rgb_to_yiq(np.asarray(x, np.float32)), np.float64)

  def chroma_map(c_pixels, c_weight, s_pixels, s_weight):
    c_yiq, s_yiq = to_yiq(c_pixels), to_yiq(s_pixels)
    mu_c, cov_c = _weighted_mean_cov(c_yiq, c_weight)
    mu_s, cov_s = _weighted_mean_cov(s_yiq, s_weight)
    scale = np.sqrt(np.maximum(np.diag(cov_s), 0.0)) / np.maximum(np.sqrt(np.maximum(np.diag(cov_c), 0.0)), eps)
    out = c_yiq.copy()
    out[:, 1:] = (c_yiq[:, 1:] - mu_c[1:]) * scale[1:] + mu_s[1:]
    return np.asarray(yiq_to_rgb(out.astype(np.float32)), np.float64)
  return _blend_region_maps(image, style, content_masks, style_masks, chroma_map)


def _quadratic_features(yiq: np.ndarray) -> np.ndarray:
  """(N, 10) monomials of degree <= 2 in Y, I, Q: 1, Y, I, Q, Y², I², Q², YI, YQ, IQ."""
  y, i, q = yiq[:, 0], yiq[:, 1], yiq[:, 2]
  return np.stack([np.ones_like(y), y, i, q, y * y, i * i, q * q, y * i, y * q, i * q], axis=-1)


def fit_region_chroma(image: np.ndarray, content: np.ndarray, *, content_masks: np.ndarray,
                      ridge: float = 1e-6) -> np.ndarray:
  """`image` whose YIQ chroma in each region is a quadratic function of the content's colour there; luma untouched.

  Per region r with mask m_r, the result's chroma c = (I, Q) is fitted by weighted least squares as
  f_r(y) = B_r^T φ(y), φ the monomials of degree <= 2 of the content's YIQ y at the same pixel, and replaced by
  Σ_r m_r f_r(y). Within a region, content pixels of one colour then get one chroma: what stays is the colour
  mapping from content to result, and what goes is chroma that varies where the content does not (the pale
  green and blue patches an optimisation leaves in a flat sky or wall). The fit keeps each region's mean chroma
  (φ holds a constant) and takes out the chroma that the content's colour does not explain, so a gray result
  stays gray.

  Args:
    image: (H, W, 3) RGB result.
    content: (H, W, 3) RGB content at the result's size.
    content_masks: (R, H, W) soft region masks, summing to 1 at every pixel.
    ridge: Tikhonov weight on the normal equations (a region of one flat colour is rank deficient).

  Returns:
    (H, W, 3) float32, not clipped.

  Example:
    >>> flat = np.full((8, 8, 3), 0.5, np.float32)
    >>> noisy = flat + np.random.default_rng(0).normal(0, 0.05, flat.shape).astype(np.float32)
    >>> out = fit_region_chroma(noisy, flat, content_masks=np.ones((1, 8, 8)))
    >>> float(np.ptp(np.asarray(rgb_to_yiq(out))[..., 1:], axis=(0, 1)).max()) < 1e-5  # one colour, one chroma
    True
  """
  if image.shape != content.shape:
    raise NSTError(f"fit_region_chroma: image {image.shape} and content {content.shape} differ")
  # NumPy colour transforms: the jnp ones would compile an executable for every new image shape.
  out_yiq = np.asarray(image, np.float64).reshape(-1, 3) @ _RGB_TO_YIQ.T
  phi = _quadratic_features(np.asarray(content, np.float64).reshape(-1, 3) @ _RGB_TO_YIQ.T)
  chroma = np.zeros((phi.shape[0], 2))
  for mask in np.asarray(content_masks, np.float64):
    weight = mask.reshape(-1)
    if weight.sum() <= 0:
      continue
    weighted = phi * weight[:, None]
    normal = weighted.T @ phi
    coef = np.linalg.solve(normal + ridge * np.trace(normal) / len(normal) * np.eye(len(normal)),
                           weighted.T @ out_yiq[:, 1:])
    chroma += weight[:, None] * (phi @ coef)
  out_yiq[:, 1:] = chroma
  return (out_yiq @ _YIQ_TO_RGB.T).reshape(image.shape).astype(np.float32)


def _blend_region_maps(content: np.ndarray, style: np.ndarray, content_masks: np.ndarray, style_masks: np.ndarray,
                       region_map) -> np.ndarray:
  """Sum over regions of region_map(content pixels, content weights, style pixels, style weights) (N, 3), each
  weighted by its content mask; a region empty in the style keeps the content's colours, one empty in the content
  is skipped. Float32 in the content's shape."""
  content = np.asarray(content, np.float64)
  c_pixels = content.reshape(-1, 3)
  s_pixels = np.asarray(style, np.float64).reshape(-1, 3)
  out = np.zeros_like(c_pixels)
  for c_mask, s_mask in zip(np.asarray(content_masks, np.float64), np.asarray(style_masks, np.float64)):
    c_weight, s_weight = c_mask.reshape(-1), s_mask.reshape(-1)
    if c_weight.sum() <= 0:
      continue
    mapped = c_pixels if s_weight.sum() <= 0 else region_map(c_pixels, c_weight, s_pixels, s_weight)
    out += mapped * c_weight[:, None]
  return out.reshape(content.shape).astype(np.float32)


def _weighted_quantile_map(x: np.ndarray, x_weights: np.ndarray, y: np.ndarray,
                           y_weights: np.ndarray) -> np.ndarray:
  """Each value of `x` moved to the value of `y` at the same weighted quantile (1-D optimal transport)."""
  x_order, y_order = np.argsort(x, kind="stable"), np.argsort(y, kind="stable")
  x_cdf = (np.cumsum(x_weights[x_order]) - 0.5 * x_weights[x_order]) / x_weights.sum()
  y_cdf = (np.cumsum(y_weights[y_order]) - 0.5 * y_weights[y_order]) / y_weights.sum()
  out = np.empty_like(x)
  out[x_order] = np.interp(x_cdf, y_cdf, y[y_order])
  return out


def match_region_distributions(content: np.ndarray, style: np.ndarray, *, content_masks: np.ndarray,
                               style_masks: np.ndarray, iterations: int = 20, seed: int = 0) -> np.ndarray:
  """`content` with each region's whole colour distribution moved to the matching style region's.

  Iterative distribution transfer (Pitié, Kokaram and Dahyot 2005): each of `iterations` steps rotates the colour
  space at random (seeded by `seed`) and matches the three 1-D marginals by weighted quantiles; the rotated
  marginals of the result converge to the style's, so a blue sky can take one of the painting's colours instead of
  the mean-and-covariance map's blend of all of them. The masks, weights and blending are those of
  `match_region_colors`. Float32, not clipped."""
  rng = np.random.default_rng(seed)
  rotations = [np.linalg.qr(rng.standard_normal((3, 3)))[0] for _ in range(iterations)]

  def distribution_map(c_pixels, c_weight, s_pixels, s_weight):
    keep = np.flatnonzero(s_weight > 0)
    if len(keep) > MAX_STYLE_SAMPLES:  # quantiles of a random sample this size are within ~0.5% of the whole's
      keep = np.sort(rng.choice(keep, MAX_STYLE_SAMPLES, replace=False))
    x, y, y_weight = c_pixels, s_pixels[keep], s_weight[keep]
    x_weight = c_weight + 1e-12  # pixels outside the region still get a place on its CDF (their share is 0)
    for rotation in rotations:
      xr, yr = x @ rotation, y @ rotation
      x = np.stack([_weighted_quantile_map(xr[:, d], x_weight, yr[:, d], y_weight) for d in range(3)],
                   axis=1) @ rotation.T
    return x
  return _blend_region_maps(content, style, content_masks, style_masks, distribution_map)


def match_style_mixture(content: np.ndarray, styles: Sequence[np.ndarray], *, region_masks: np.ndarray,
                        region_style_weights: np.ndarray, method: str = "moments") -> np.ndarray:
  """`content` with each region's colours moved to those of its mixture of `styles`.

  Args:
    content: (H, W, 3) RGB in [0, 1].
    styles: RGB [0, 1] style images (any sizes).
    region_masks: (R, H, W) soft masks at the content's size. Where they sum to more than 1 they are normalised;
      pixels they do not cover keep their colours.
    region_style_weights: (R, S): region r takes the pooled pixels of the styles in these proportions (each style
      counted by its weight whatever its size).
    method: 'moments' moves the colour mean and 3x3 covariance (`match_region_colors`), 'distribution' the whole
      colour distribution (`match_region_distributions`).

  Returns:
    (H, W, 3) float32 clipped to [0, 1] (a starting image).
  """
  if method not in START_COLOR_METHODS:
    raise ValueError(f"method must be one of {START_COLOR_METHODS}, got {method!r}")
  pixels = [np.asarray(s, np.float64).reshape(-1, 3) for s in styles]
  pooled = np.concatenate(pixels)[:, None, :]
  style_masks = np.stack([np.concatenate([np.full(len(p), w / len(p)) for p, w in zip(pixels, weights)])
                          for weights in np.asarray(region_style_weights, np.float64)])[:, :, None]
  masks = np.asarray(region_masks, np.float64)
  masks = masks / np.maximum(masks.sum(axis=0), 1.0)
  rest = np.clip(1.0 - masks.sum(axis=0), 0.0, 1.0)  # uncovered: no style pixels, so its colours stay
  content_masks = np.concatenate([masks, rest[None]])
  style_masks = np.concatenate([style_masks, np.zeros_like(style_masks[:1])])
  match = match_region_colors if method == "moments" else match_region_distributions
  matched = match(content, pooled, content_masks=content_masks, style_masks=style_masks)
  return np.clip(matched, 0.0, 1.0)


def _floor_eigenvalues(cov: np.ndarray, eps: float) -> np.ndarray:
  values, vectors = np.linalg.eigh(cov)
  if values.min() >= eps:
    return cov
  return (vectors * np.maximum(values, eps)) @ vectors.T


def match_color_histogram(source: np.ndarray, target: np.ndarray, *,
                          method: Literal["cholesky", "eigen"] = "cholesky", eps: float = 1e-5,
                          clip: bool = False) -> np.ndarray:
  """`source` recoloured to the per-channel mean and 3x3 colour covariance of `target` (float32, same shape).

  Used with source = style, target = content before transfer (Gatys et al. 2017's colour histogram matching;
  `histogram_transform` gives the map). The result may leave [0, 1]; clipping changes the matched statistics, so it
  is off unless `clip` is set and otherwise left to the caller (e.g. before the image is fed to VGG or saved)."""
  a, b = histogram_transform(source, target, method=method, eps=eps)
  source = np.asarray(source, np.float64)
  matched = source @ a.T + b
  if clip:
    matched = np.clip(matched, 0.0, 1.0)
  return matched.astype(np.float32)


def with_chroma_statistics(image: jax.Array, *, own_mean: jax.Array, own_std: jax.Array, mean: jax.Array,
                           std: jax.Array) -> jax.Array:
  """RGB `image` with its YIQ chroma given the statistics (`mean`, `std`); its luma Y untouched. Jittable.

  AdaIN of the pixels' chroma: (I, Q) are standardised by the image's own statistics (`own_mean`, `own_std`, each
  broadcasting against (..., 2)) and rescaled to `std` around `mean`. A gray reference (std 0, mean 0) gives a gray
  image. Not clipped."""
  yiq = rgb_to_yiq(image)
  chroma = (yiq[..., 1:] - own_mean) / own_std * std + mean
  return yiq_to_rgb(jnp.concatenate([yiq[..., :1], chroma], axis=-1))


def match_chroma_statistics(image: np.ndarray, references: Sequence[np.ndarray], *,
                            weights: Sequence[float] | None = None, eps: float = 1e-6) -> np.ndarray:
  """`image` given the references' chroma means and stds (`with_chroma_statistics`), clipped to [0, 1].

  The statistics are weighted averages of each reference's (`weights` default equal). Used after an optimisation
  whose loss leaves the pixels' chroma free (the MRF loss; see `StylizeConfig.style_colors`); the AdaIN decoder's
  colour step is the same map."""
  weights = np.full(len(references), 1.0 / len(references)) if weights is None else np.asarray(weights, np.float64)
  stats = [_chroma_mean_std(ref) for ref in references]
  mean = sum(w * m for w, (m, _) in zip(weights, stats))
  std = sum(w * sd for w, (_, sd) in zip(weights, stats))
  own_mean, own_std = _chroma_mean_std(image)
  out = with_chroma_statistics(image, own_mean=own_mean, own_std=np.maximum(own_std, eps), mean=mean, std=std)
  return np.clip(np.asarray(out), 0.0, 1.0).astype(np.float32)


def _chroma_mean_std(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  chroma = np.asarray(rgb_to_yiq(image), np.float64)[..., 1:].reshape(-1, 2)
  return chroma.mean(axis=0).astype(np.float32), chroma.std(axis=0).astype(np.float32)
