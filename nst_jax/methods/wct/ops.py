"""The whitening and colouring transform (WCT, Li et al. 2017, section 3.1), pure jnp on (H, W, C) features.

With the content's features f_c (C x HW, mean m_c removed) and covariance f_c f_c^T / (HW - 1) = E_c D_c E_c^T,

  whitening:  f_w = E_c D_c^(-1/2) E_c^T f_c                          so that f_w f_w^T / (HW - 1) = I,
  colouring:  f_cs = E_s D_s^(1/2) E_s^T f_w + m_s                     so that its covariance is the style's,

and the result is blended with the content, alpha f_cs + (1 - alpha) f_c. A Gram loss (Gatys et al.) measures
exactly the second moments that this matches. Eigendecompositions run in float32 with every eigenvalue raised by
`eps` times the mean eigenvalue (a rank-deficient covariance, e.g. from dead ReLU channels or a flat image, stays
invertible without a scale-dependent constant); tests hold them against float64 NumPy.

Controls: several styles with blend weights (the transformed features mixed linearly, Li et al. section 4), and
spatial masks: region k's content features are whitened with that region's own statistics and coloured with
style k's, and only region k's positions take the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

EPS = 1e-5


class Moments(NamedTuple):
  """A feature distribution's mean (C,) and covariance (C, C)."""

  mean: jax.Array
  cov: jax.Array


class StyleTransform(NamedTuple):
  """What colouring needs of a style at one level: its mean (C,) and the colouring matrix E D^(1/2) E^T (C, C)."""

  mean: jax.Array
  coloring: jax.Array


def moments(feats: jax.Array, *, weights: jax.Array | None = None) -> Moments:
  """Mean and unbiased covariance of (H, W, C) features over positions.

  `weights` ((H, W), non-negative) weigh the positions (a soft region mask; the effective count is
  sum(w)^2 / sum(w^2))."""
  x = feats.reshape(-1, feats.shape[-1]).astype(jnp.float32)
  if weights is None:
    mean = jnp.mean(x, axis=0)
    centred = x - mean
    return Moments(mean, centred.T @ centred / jnp.maximum(x.shape[0] - 1, 1))
  w = weights.reshape(-1).astype(jnp.float32)
  total = jnp.maximum(jnp.sum(w), 1e-8)
  mean = w @ x / total
  centred = x - mean
  # Reliability weights' unbiased estimate: divide by sum(w) - sum(w^2) / sum(w).
  denom = jnp.maximum(total - jnp.sum(w * w) / total, 1e-8)
  return Moments(mean, (centred * w[:, None]).T @ centred / denom)


def _eig_power(cov: jax.Array, power: float | jax.Array, eps: float) -> jax.Array:
  """E (D + eps mean(D))^power E^T of symmetric covariances (..., C, C), `power` broadcast over the leading axes
  (negative round-off eigenvalues count as 0)."""
  cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
  values, vectors = jnp.linalg.eigh(cov)
  values = jnp.maximum(values, 0.0)
  values = values + eps * jnp.maximum(jnp.mean(values, axis=-1, keepdims=True), 1e-12)
  powered = values ** jnp.expand_dims(jnp.asarray(power, values.dtype), -1)
  scaled = vectors * jnp.expand_dims(powered, -2)
  return scaled @ jnp.swapaxes(vectors, -1, -2)


def whitening_matrix(cov: jax.Array, *, eps: float = EPS) -> jax.Array:
  """E D^(-1/2) E^T, regularised: D raised by eps times its mean."""
  return _eig_power(cov, -0.5, eps)


def coloring_matrix(cov: jax.Array, *, eps: float = EPS) -> jax.Array:
  """E D^(1/2) E^T, regularised like `whitening_matrix`."""
  return _eig_power(cov, 0.5, eps)


def style_transform(feats: jax.Array, *, eps: float = EPS) -> StyleTransform:
  """A style's mean and colouring matrix at one level, from its (H, W, C) features."""
  m = moments(feats)
  return StyleTransform(m.mean, coloring_matrix(m.cov, eps=eps))


def whiten(feats: jax.Array, *, eps: float = EPS, weights: jax.Array | None = None,
           stats: Moments | None = None) -> jax.Array:
  """(H, W, C) features with their mean removed and identity covariance: f_w = E_c D_c^(-1/2) E_c^T (f - m_c).

  The statistics are those of the `weights`' region if given, or the given `stats` (e.g. a whole image's, for one of
  its tiles)."""
  m = moments(feats, weights=weights) if stats is None else stats
  return (feats - m.mean) @ whitening_matrix(m.cov, eps=eps)


def wct(content: jax.Array, style: StyleTransform, *, eps: float = EPS, weights: jax.Array | None = None,
        stats: Moments | None = None) -> jax.Array:
  """WCT of content features (H, W, C): whitened (`whiten`) and coloured with `style`, f_cs = C_s f_w + m_s."""
  return whiten(content, eps=eps, weights=weights, stats=stats) @ style.coloring + style.mean


def wct_pair(content: jax.Array, style: jax.Array, *, eps: float = EPS) -> jax.Array:
  """`wct(content, style_transform(style))` for (H, W, C) features of both, the eigendecompositions in one call.

  Under `jax.vmap` inside `jax.jit`, two separate batched `eigh` calls have been seen to deadlock the XLA CPU runtime
  (jax 0.10.2); one call on the stacked covariances does not."""
  mc, ms = moments(content), moments(style)
  white, colour = _eig_power(jnp.stack([mc.cov, ms.cov]), jnp.array([-0.5, 0.5]), eps)
  return (content - mc.mean) @ white @ colour + ms.mean


def moment_sums(feats: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """(sum w, sum w^2, weighted mean, sum w (f - mean)(f - mean)^T) over positions: one part of a whole image's moments.

  Centred on the part's own mean, so that `combine_moments` loses no precision when the mean is large against the
  spread (as for ReLU features)."""
  x = feats.reshape(-1, feats.shape[-1]).astype(jnp.float32)
  w = weights.reshape(-1).astype(jnp.float32)
  total = jnp.sum(w)
  mean = w @ x / jnp.maximum(total, 1e-8)
  centred = x - mean
  return total, jnp.sum(w * w), mean, (centred * w[:, None]).T @ centred


def combine_moments(parts: Sequence[tuple]) -> Moments:
  """The weighted mean and unbiased covariance (as `moments` gives) of the union of `moment_sums` parts.

  Combined in float64 on the host (Chan et al.'s pairwise update)."""
  totals = np.array([float(p[0]) for p in parts])
  total = max(totals.sum(), 1e-8)
  means = np.stack([np.asarray(p[2], np.float64) for p in parts])
  mean = totals @ means / total
  scatter = sum(np.asarray(p[3], np.float64) for p in parts)
  diff = means - mean
  scatter = scatter + (diff * totals[:, None]).T @ diff
  denom = max(total - sum(float(p[1]) for p in parts) / total, 1e-8)
  return Moments(jnp.asarray(mean, jnp.float32), jnp.asarray(scatter / denom, jnp.float32))


def transform(content: jax.Array, styles: Sequence[StyleTransform], *, alpha: float | jax.Array = 1.0,
              style_weights: jax.Array | None = None, masks: jax.Array | None = None,
              weights: jax.Array | None = None, stats: Sequence[Moments] | None = None,
              eps: float = EPS) -> jax.Array:
  """WCT of (H, W, C) content features with several styles, blended with the content by `alpha`.

  Args:
    content: the content's features at one level.
    styles: one `StyleTransform` per style (at this level).
    alpha: 1 gives the transformed features, 0 the content's.
    style_weights: (K,) non-negative blend weights of the styles' transforms (normalised to sum 1); default equal.
    masks: (K, H, W) region weights at this level's resolution, one per style: region k is whitened with its own
      statistics and coloured with style k; each position takes the mask-weighted sum (masks should sum to 1).
    weights: (H, W) weights of the positions whose statistics count (e.g. 0 on padding); default all.
    stats: the content statistics to whiten with instead (one, or one per mask): a whole image's for its tiles.
    eps: eigenvalue regularisation (see the module docstring).
  """
  if masks is None:  # the same for every style: whiten once
    whitened = whiten(content, eps=eps, weights=weights, stats=None if stats is None else stats[0])
    return color_blend(whitened, content, styles, alpha=alpha, style_weights=style_weights)
  k = len(styles)
  region = [masks[i] if weights is None else masks[i] * weights for i in range(k)]
  out = sum(masks[i][..., None] * wct(content, styles[i], eps=eps, weights=region[i],
                                      stats=None if stats is None else stats[i]) for i in range(k))
  return alpha * out + (1.0 - alpha) * content


def color_blend(whitened: jax.Array, content: jax.Array, styles: Sequence[StyleTransform], *,
                alpha: float | jax.Array = 1.0, style_weights: jax.Array | None = None) -> jax.Array:
  """`transform`'s result (no masks) from the content's whitened features: coloured with each style, the styles
  blended by `style_weights` (normalised; default equal), the result blended with `content` by `alpha`."""
  k = len(styles)
  w = jnp.ones((k,), jnp.float32) if style_weights is None else jnp.asarray(style_weights, jnp.float32)
  w = w / jnp.sum(w)
  out = sum(w[i] * (whitened @ styles[i].coloring + styles[i].mean) for i in range(k))
  return alpha * out + (1.0 - alpha) * content
