"""Pure loss functions of Gatys et al. (2016), keyword-only, on NHWC feature maps.

Normalisation (chosen so that weights do not depend on the image size):
  content   L_c = sum_l w_l * mean((F_l - P_l)^2)
  style     L_s = sum_l w_l * E_l,   E_l = sum((G_l - A_l)^2) / (4 N_l^2)   with G = F^T F / M_l
            which is exactly Gatys et al.'s E_l = sum((F F^T - A)^2) / (4 N^2 M^2), N channels, M = H*W positions.
  tv        L_tv = mean over neighbouring pixel pairs of the squared difference (both directions).
Layer weights default to 1 / (number of layers), i.e. Gatys et al.'s w_l = 1/5 for five style layers.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

Features = Mapping[str, jax.Array]


@jax.custom_jvp
def gram_product(flat: jax.Array) -> jax.Array:
  """The float32 product F^T F of (..., M, C) features: (..., C, C), accumulated in float32.

  The derivative is written as d(F^T F) = T + T^T with T = F^T dF, so that its transpose (the gradient) is the one
  product F (G + G^T) instead of the two, F G^T + F G, that autodiff of the einsum gives: a third fewer Gram
  FLOPs per evaluation, the same values."""
  return jnp.einsum("...mi,...mj->...ij", flat, flat, preferred_element_type=jnp.float32)


@gram_product.defjvp
def _gram_product_jvp(primals, tangents):
  (flat,), (d_flat,) = primals, tangents
  half = jnp.einsum("...mi,...mj->...ij", flat, d_flat, preferred_element_type=jnp.float32)
  return gram_product(flat), half + jnp.swapaxes(half, -1, -2)


def gram_matrix(features: jax.Array) -> jax.Array:
  """The Gram matrix G = F^T F / (H W) of (..., H, W, C) features: (..., C, C), accumulated in float32."""
  *batch, h, w, c = features.shape
  return gram_product(features.reshape(*batch, h * w, c)) / (h * w)


def layer_weights_or_equal(names, layer_weights: Mapping[str, float] | None) -> dict[str, float]:
  """The per-layer weights w_l for `names`: the given ones, or 1/len(names) each (Gatys et al.'s)."""
  if layer_weights is None:
    return {name: 1.0 / len(names) for name in names}
  return {name: layer_weights[name] for name in names}


def content_loss(*, features: Features, targets: Features,
                 layer_weights: Mapping[str, float] | None = None) -> jax.Array:
  """Content loss L_c = sum_l w_l mean((F_l - P_l)^2) over the layers in `targets`.

  Args:
    features: {layer: F_l} of the image being optimised.
    targets: {layer: P_l} of the content image; its keys are the content layers.
    layer_weights: {layer: w_l}; default 1 / (number of layers).

  Returns:
    The scalar loss (float32).
  """
  weights = layer_weights_or_equal(list(targets), layer_weights)
  return sum(weights[name] * jnp.mean(jnp.square(features[name].astype(jnp.float32) - targets[name]))
             for name in targets)


def style_layer_loss(*, gram: jax.Array, target_gram: jax.Array) -> jax.Array:
  """Gatys et al.'s per-layer style loss E_l = sum((G - A)^2) / (4 N^2) of normalised (..., N, N) Gram matrices.

  With G = F^T F / M this is exactly their sum((F F^T - A')^2) / (4 N^2 M^2) for unnormalised matrices. Leading
  axes are kept (one value per batch entry or region)."""
  n = gram.shape[-1]
  return jnp.sum(jnp.square(gram - target_gram), axis=(-2, -1)) / (4.0 * n * n)


def style_loss(*, features: Features, target_grams: Features,
               layer_weights: Mapping[str, float] | None = None) -> jax.Array:
  """Style loss L_s = sum_l w_l E_l(G(F_l), A_l) over the layers in `target_grams` (`style_layer_loss`).

  Args:
    features: {layer: (..., H, W, C) features} of the image being optimised.
    target_grams: {layer: (C, C) Gram matrix A_l of the style (`gram_matrix`)}; its keys are the style layers.
    layer_weights: {layer: w_l}; default 1 / (number of layers).

  Returns:
    The scalar loss, summed over a batch if the features have one.
  """
  weights = layer_weights_or_equal(list(target_grams), layer_weights)
  return sum(weights[name] * jnp.sum(style_layer_loss(gram=gram_matrix(features[name]),
                                                      target_gram=target_grams[name]))
             for name in target_grams)


def range_penalty(*, image: jax.Array, low: float = 0.0, high: float = 1.0) -> jax.Array:
  """Range penalty mean((max(low - x, 0))^2 + (max(x - high, 0))^2) over all values of `image`: zero inside.

  The optimised image is saved clipped to [low, high], and an optimiser left free puts values outside it where that
  lowers the style loss; this term keeps it inside."""
  return jnp.mean(jnp.square(jnp.maximum(low - image, 0.0)) + jnp.square(jnp.maximum(image - high, 0.0)))


def total_variation_loss(*, image: jax.Array) -> jax.Array:
  """Total variation L_tv = mean((x[i+1, j] - x[i, j])^2) + mean((x[i, j+1] - x[i, j])^2) of an (..., H, W, C) image."""
  dy = image[..., 1:, :, :] - image[..., :-1, :, :]
  dx = image[..., :, 1:, :] - image[..., :, :-1, :]
  return jnp.mean(jnp.square(dy)) + jnp.mean(jnp.square(dx))
