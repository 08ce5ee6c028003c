"""The AdaIN operation, its controls and its losses (Huang & Belongie 2017), pure jnp on NHWC features.

  AdaIN(x, y) = sigma(y) (x - mu(x)) / sigma(x) + mu(y)        (statistics over space, per image and channel).

Controls (paper, section 7): the content-style trade-off alpha, interpolation between styles with weights, spatial
control with masks (each region's content features are normalised with that region's own statistics and take one
style's statistics).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import losses
from nst_jax.models import vgg
from nst_jax.models.adain_decoder import ENCODER_LAYER
from nst_jax.models.preprocessing import Preprocessing

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
EPS = 1e-5

# ----------------------------------------------------------------------------------------------------------------
# The AdaIN operation and its controls (pure jnp; NHWC features)


def feature_stats(feats: jax.Array, *, mask: jax.Array | None = None,
                  eps: float = EPS) -> tuple[jax.Array, jax.Array]:
  """Per-image, per-channel mean and standard deviation over space, each (N, 1, 1, C).

  With a mask ((H, W) or (N, H, W, 1), non-negative weights) the statistics are those of the mask-weighted
  positions. The standard deviation is sqrt(variance + eps), so a flat channel does not divide by zero."""
  if mask is None:
    mean = jnp.mean(feats, axis=(1, 2), keepdims=True)
    var = jnp.mean(jnp.square(feats - mean), axis=(1, 2), keepdims=True)
  else:
    mask = jnp.asarray(mask, feats.dtype)
    if mask.ndim == 2:
      mask = mask[None, :, :, None]
    total = jnp.maximum(jnp.sum(mask, axis=(1, 2), keepdims=True), 1e-8)
    mean = jnp.sum(feats * mask, axis=(1, 2), keepdims=True) / total
    var = jnp.sum(jnp.square(feats - mean) * mask, axis=(1, 2), keepdims=True) / total
  return mean, jnp.sqrt(var + eps)


def pooled_stats(stats: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
  """`feature_stats` of the union of equally sized parts (e.g. a clip's frames) from each part's (mean, std),
  combined in float64 on the host (a part's variance is its std^2 - EPS).

  Returns:
    (mean, std) float32 of each part's shape."""
  means = np.stack([np.asarray(m, np.float64) for m, _ in stats])
  variances = np.stack([np.square(np.asarray(s, np.float64)) - EPS for _, s in stats])
  mean = means.mean(axis=0)
  var = np.maximum((variances + np.square(means - mean)).mean(axis=0), 0.0)
  return mean.astype(np.float32), np.sqrt(var + EPS).astype(np.float32)


def normalize_to(feats: jax.Array, *, content_mean: jax.Array, content_std: jax.Array, style_mean: jax.Array,
                 style_std: jax.Array) -> jax.Array:
  """Features standardised with the given content statistics and rescaled to the style's."""
  return style_std * (feats - content_mean) / content_std + style_mean


def adain(content_feats: jax.Array, style_feats: jax.Array, *, eps: float = EPS) -> jax.Array:
  """AdaIN(x, y) = sigma(y) (x - mu(x)) / sigma(x) + mu(y), statistics per image and channel over space."""
  c_mean, c_std = feature_stats(content_feats, eps=eps)
  s_mean, s_std = feature_stats(style_feats, eps=eps)
  return normalize_to(content_feats, content_mean=c_mean, content_std=c_std, style_mean=s_mean, style_std=s_std)


Stats = tuple[jax.Array, jax.Array]  # (mean, std), each (N, 1, 1, C)


def adain_target(content_feats: jax.Array, *, style_stats: Sequence[Stats], style_weights: jax.Array | None = None,
                 masks: jax.Array | None = None, content_stats: Sequence[Stats] | None = None,
                 alpha: float | jax.Array = 1.0, eps: float = EPS) -> jax.Array:
  """The decoder input for one content batch and K styles (the paper's controls, section 7).

  Without masks: t = sum_k w_k AdaIN_k(f), the weights normalised to sum 1 (style interpolation). With masks:
  t = sum_k m_k AdaIN_k(f) where style k's AdaIN standardises f with the statistics of region k only (spatial
  control). Finally t <- alpha t + (1 - alpha) f.

  Args:
    content_feats: (N, H, W, C) content features f.
    style_stats: one (mean, std) per style (`feature_stats`).
    style_weights: (K,) blend weights; default equal.
    masks: (K, H, W) at the feature resolution, summing to 1 at every position.
    content_stats: statistics to standardise f with instead of its own, one per style (or one shared when there
      are no masks): tiles use the statistics of a thumbnail of the whole image.
    alpha: content-style trade-off; 0 gives f.
    eps: added to the variances.
  """
  num = len(style_stats)
  if masks is None:
    weights = jnp.ones((num,)) if style_weights is None else jnp.asarray(style_weights, jnp.float32)
    weights = weights / jnp.sum(weights)
    c_mean, c_std = content_stats[0] if content_stats is not None else feature_stats(content_feats, eps=eps)
    target = sum(weights[k] * normalize_to(content_feats, content_mean=c_mean, content_std=c_std,
                                           style_mean=style_stats[k][0], style_std=style_stats[k][1])
                 for k in range(num))
  else:
    target = 0.0
    for k in range(num):
      c_mean, c_std = (content_stats[k] if content_stats is not None
                       else feature_stats(content_feats, mask=masks[k], eps=eps))
      region = normalize_to(content_feats, content_mean=c_mean, content_std=c_std, style_mean=style_stats[k][0],
                            style_std=style_stats[k][1])
      target = target + masks[k][None, :, :, None] * region
  return alpha * target + (1.0 - alpha) * content_feats


# ----------------------------------------------------------------------------------------------------------------
# The encoder


def encode(enc_params: Mapping, images: jax.Array, *, arch: str, preprocessing: Preprocessing,
           layers: tuple[str, ...] = (ENCODER_LAYER,), backward: Mapping | None = None) -> dict[str, jax.Array]:
  """{layer: features} of RGB [0, 1] images (N, H, W, 3) under the encoder weights' own preprocessing."""
  variables = {"params": enc_params}
  if backward is not None:
    variables[vgg.BACKWARD_KERNELS] = backward
  return vgg.VGG(arch, layers, pooling="max").apply(variables, preprocessing.apply(images))


# ----------------------------------------------------------------------------------------------------------------
# Losses (pure, keyword-only)


def content_loss(*, output_feats: jax.Array, target: jax.Array) -> jax.Array:
  """AdaIN's content loss mean((f(g(t)) - t)^2): the output's relu4_1 features against the AdaIN target."""
  return jnp.mean(jnp.square(output_feats - target))


def style_stats_loss(*, output_feats: Mapping[str, jax.Array], style_feats: Mapping[str, jax.Array],
                     layers: Sequence[str] = STYLE_LAYERS, eps: float = EPS, relative: bool = False) -> jax.Array:
  """AdaIN's style loss sum_l mean((mu_l(out) - mu_l(s))^2) + mean((sigma_l(out) - sigma_l(s))^2) over `layers`.

  `relative` divides each layer's term by the mean square of the style's means and stds, so every layer counts
  alike."""
  total = 0.0
  for layer in layers:
    o_mean, o_std = feature_stats(output_feats[layer], eps=eps)
    s_mean, s_std = feature_stats(style_feats[layer], eps=eps)
    term = jnp.mean(jnp.square(o_mean - s_mean)) + jnp.mean(jnp.square(o_std - s_std))
    if relative:
      term = term / (jnp.mean(jnp.square(s_mean)) + jnp.mean(jnp.square(s_std)) + 1e-8)
    total = total + term
  return total


def style_gram_loss(*, output_feats: Mapping[str, jax.Array], style_feats: Mapping[str, jax.Array],
                    layers: Sequence[str] = STYLE_LAYERS) -> jax.Array:
  """The Gram matrices' relative error sum_l mean_n ||G_l(out_n) - G_l(s_n)||^2 / ||G_l(s_n)||^2 over `layers`.

  Gatys et al.'s statistic (the whole channel covariance, not only each channel's mean and std as
  `style_stats_loss`), relative per layer and image so that every layer counts alike on any network.

  Example:
    >>> feats = {"relu1_1": jnp.ones((1, 4, 4, 3))}
    >>> float(style_gram_loss(output_feats=feats, style_feats=feats, layers=("relu1_1",)))
    0.0
  """
  total = 0.0
  for layer in layers:
    g_out, g_style = losses.gram_matrix(output_feats[layer]), losses.gram_matrix(style_feats[layer])
    error = jnp.sum(jnp.square(g_out - g_style), axis=(-2, -1))
    total = total + jnp.mean(error / (jnp.sum(jnp.square(g_style), axis=(-2, -1)) + 1e-12))
  return total
