"""MRF style loss of Li & Wand (2016), "Combining Markov Random Fields and Convolutional Neural Networks for Image
Synthesis", eq. (2)-(3).

Every k x k patch Ψ_i(x) of the synthesised feature map is matched to the style patch with the highest normalised
cross-correlation,

  NN(i) = argmax_j <Ψ_i(x), Ψ_j(s)> / (|Ψ_i(x)| |Ψ_j(s)|),

and pulled towards it: E_s = sum_i ||Ψ_i(x) - Ψ_NN(i)(s)||^2. The norm |Ψ_i(x)| is the same for every j, so the
argmax only needs the correlations with the *normalised* style patches, which is one convolution with those
patches as kernels (as in Li & Wand's implementation). The match is a discrete choice held fixed for the gradient.

Normalisation: Li & Wand use the plain sum; here it is divided by the number of synthesised patches and by the
patch dimension k*k*C, i.e. the mean squared difference over all matched patch elements, so that weights do not
depend on the image size or the layer width (like `nst_jax.losses`). Layer weights default to 1 / (number of
layers).

Cost: the correlation map holds (h' * w') x P values (synthesised patch positions x style patches) per layer, e.g.
4096 x 4096 floats (64 MiB) for 64 x 64 feature maps with stride 1; a stride > 1 thins both.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.losses import layer_weights_or_equal

PatchBank = Mapping[str, jax.Array]

# Guards the division for all-zero style patches (common after a ReLU): they become zero kernels, which correlate
# 0 with everything instead of producing NaN.
_NORM_EPS = 1e-8


def _single(features: jax.Array) -> jax.Array:
  """(1, h, w, C) or (h, w, C) -> (h, w, C)."""
  if features.ndim == 4:
    if features.shape[0] != 1:
      raise ValueError(f"MRF patches are taken from one image, got a batch of {features.shape[0]}")
    return features[0]
  if features.ndim != 3:
    raise ValueError(f"features must be (1, h, w, C) or (h, w, C), got shape {features.shape}")
  return features


def extract_patches(features: jax.Array, patch_size: int = 3, stride: int = 1) -> jax.Array:
  """All VALID k x k patches of (h, w, C) features as (P, k, k, C), in row-major order of their top-left corners."""
  h, w, _ = features.shape
  if h < patch_size or w < patch_size:
    raise ValueError(f"features of size {h}x{w} are smaller than the {patch_size}x{patch_size} patches")
  # Static gather indices (shapes are known at trace time), so this is one gather under jit.
  rows = np.arange(0, h - patch_size + 1, stride)[:, None] + np.arange(patch_size)  # (h', k)
  cols = np.arange(0, w - patch_size + 1, stride)[:, None] + np.arange(patch_size)  # (w', k)
  patches = features[rows[:, None, :, None], cols[None, :, None, :]]  # (h', w', k, k, C)
  return patches.reshape(-1, patch_size, patch_size, features.shape[-1])


def style_patch_bank(style_features: jax.Array, *, patch_size: int = 3, stride: int = 1) -> dict[str, jax.Array]:
  """The style's patches, once per style: {"patches": (P, k, k, C), "normalized": patches / |patch|}, float32."""
  patches = extract_patches(_single(style_features).astype(jnp.float32), patch_size, stride)
  norms = jnp.sqrt(jnp.sum(jnp.square(patches), axis=(1, 2, 3), keepdims=True))
  return {"patches": patches, "normalized": patches / jnp.maximum(norms, _NORM_EPS)}


def _patch_size(bank: PatchBank, patch_size: int | None) -> int:
  k = bank["patches"].shape[1]
  if patch_size is not None and patch_size != k:
    raise ValueError(f"patch_size {patch_size} does not match the bank's {k}x{k} patches")
  return k


def nearest_patch_indices(features: jax.Array, bank: PatchBank, *, stride: int = 1) -> jax.Array:
  """NN(i) for every synthesised patch, as (P_x,) int32 indices into the bank, in `extract_patches` order.

  One convolution of the features with the normalised style patches as kernels (HWIO: k, k, C, P) gives every
  <Ψ_i(x), Ψ_j(s) / |Ψ_j(s)|>; no gradient flows through the matching."""
  x = jax.lax.stop_gradient(_single(features).astype(jnp.float32))
  kernels = jnp.transpose(bank["normalized"], (1, 2, 3, 0))
  corr = jax.lax.conv_general_dilated(x[None], kernels, window_strides=(stride, stride), padding="VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))  # (1, h', w', P)
  return jnp.argmax(corr[0].reshape(-1, corr.shape[-1]), axis=-1).astype(jnp.int32)


def mrf_loss(*, features: jax.Array, bank: PatchBank, patch_size: int | None = None, stride: int = 1,
             patch_weights: jax.Array | None = None) -> jax.Array:
  """Li & Wand's E_s = mean_i ||Ψ_i(x) - Ψ_NN(i)(s)||^2 / (k k C) for one layer.

  Args:
    features: (h, w, C) features of the image being optimised.
    bank: the style's `style_patch_bank`.
    patch_size: k; implied by the bank (and checked if given).
    stride: of the synthesised patches; must be static under jit.
    patch_weights: (h', w'), one per synthesised patch (e.g. a region mask at the patch centres,
      `patch_centre_weights`): the mean becomes a weighted mean, which restricts the loss to a region.

  Returns:
    The scalar loss.
  """
  k = _patch_size(bank, patch_size)
  x = _single(features).astype(jnp.float32)
  nearest = nearest_patch_indices(x, bank, stride=stride)
  targets = jnp.take(bank["patches"], nearest, axis=0)
  per_patch = jnp.mean(jnp.square(extract_patches(x, k, stride) - targets), axis=(1, 2, 3))
  if patch_weights is None:
    return jnp.mean(per_patch)
  w = patch_weights.reshape(-1).astype(jnp.float32)
  return jnp.sum(w * per_patch) / jnp.maximum(jnp.sum(w), _NORM_EPS)


def patch_centre_weights(mask: jax.Array, patch_size: int, stride: int = 1) -> jax.Array:
  """The values of an (h, w) mask at the centres of the VALID patches, (h', w'), for `mrf_loss(patch_weights=...)`."""
  r = patch_size // 2
  return mask[r:mask.shape[0] - (patch_size - 1 - r):stride, r:mask.shape[1] - (patch_size - 1 - r):stride]


def mrf_style_loss(*, features: Mapping[str, jax.Array], banks: Mapping[str, PatchBank],
                   layer_weights: Mapping[str, float] | None = None, stride: int = 1) -> jax.Array:
  """MRF style loss sum_l w_l E_s,l over the layers in `banks` (one `style_patch_bank` per layer; w_l default equal)."""
  weights = layer_weights_or_equal(list(banks), layer_weights)
  return sum(weights[name] * mrf_loss(features=features[name], bank=banks[name], stride=stride)
             for name in banks)
