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
  """(..., M, C) -> (..., C, C) float32 product F^T F, accumulated in float32.

  The derivative is written as d(F^T F) = T + T^T with T = F^T dF, so that its transpose (the gradient) is the one
  product F (G + G^T) instead of the two, F G^T + F G, that autodiff of the einsum gives: a third fewer Gram FLOPs
  per evaluation, the same values.
  """
  return jnp.einsum("...mi,...mj->...ij", flat, flat, preferred_element_type=jnp.float32)


@gram_product.defjvp
def _gram_product_jvp(primals, tangents):
  (flat,), (d_flat,) = primals, tangents
  half = jnp.einsum("...mi,...mj->...ij", flat, d_flat, preferred_element_type=jnp.float32)
  return gram_product(flat), half + jnp.swapaxes(half, -1, -2)


def gram_matrix(features: jax.Array) -> jax.Array:
  """(..., H, W, C) -> (..., C, C) Gram matrix F^T F / (H W), accumulated in float32."""
  *batch, h, w, c = features.shape
  return gram_product(features.reshape(*batch, h * w, c)) / (h * w)


def layer_weights_or_equal(names, layer_weights: Mapping[str, float] | None) -> dict[str, float]:
  """The given per-layer weights for `names`, or 1/len(names) each (Gatys et al.'s w_l)."""
  if layer_weights is None:
    return {name: 1.0 / len(names) for name in names}
  return {name: layer_weights[name] for name in names}


def content_loss(*, features: Features, targets: Features,
                 layer_weights: Mapping[str, float] | None = None) -> jax.Array:
  """Weighted mean squared error between features and content targets, over the layers in `targets`."""
  weights = layer_weights_or_equal(list(targets), layer_weights)
  return sum(weights[name] * jnp.mean(jnp.square(features[name].astype(jnp.float32) - targets[name]))
             for name in targets)


def style_layer_loss(*, gram: jax.Array, target_gram: jax.Array) -> jax.Array:
  """Gatys et al.'s E_l for one layer from normalised Gram matrices (N x N)."""
  n = gram.shape[-1]
  return jnp.sum(jnp.square(gram - target_gram), axis=(-2, -1)) / (4.0 * n * n)


def style_loss(*, features: Features, target_grams: Features,
               layer_weights: Mapping[str, float] | None = None) -> jax.Array:
  """Weighted sum of E_l over the layers in `target_grams` (summed over a batch, if any)."""
  weights = layer_weights_or_equal(list(target_grams), layer_weights)
  return sum(weights[name] * jnp.sum(style_layer_loss(gram=gram_matrix(features[name]),
                                                      target_gram=target_grams[name]))
             for name in target_grams)


def range_penalty(*, image: jax.Array, low: float = 0.0, high: float = 1.0) -> jax.Array:
  """Mean over all values of the squared distance to [low, high]: zero inside the range. The optimised image is
  saved clipped to it, and an optimizer left free puts values outside it where that lowers the style loss."""
  return jnp.mean(jnp.square(jnp.maximum(low - image, 0.0)) + jnp.square(jnp.maximum(image - high, 0.0)))


def total_variation_loss(*, image: jax.Array) -> jax.Array:
  """Mean squared difference of vertically and horizontally neighbouring pixels of an (..., H, W, C) image."""
  dy = image[..., 1:, :, :] - image[..., :-1, :, :]
  dx = image[..., :, 1:, :] - image[..., :, :-1, :]
  return jnp.mean(jnp.square(dy)) + jnp.mean(jnp.square(dx))
