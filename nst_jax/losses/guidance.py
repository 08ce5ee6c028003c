"""Spatial control of style transfer with guided Gram matrices (Gatys et al. 2017, "Controlling Perceptual Factors
in Neural Style Transfer", section 4).

Each of R regions has a guidance channel m_r in [0, 1], given in image space and carried to every layer l. The
guided Gram matrix of region r is the Gram matrix of the features weighted by the guide,

  G_r = (F ⊙ m_r)^T (F ⊙ m_r) / sum(m_r^2),

normalised by the guide's mass instead of H*W so that it is a Gram matrix of the region alone (a binary guide gives
exactly the ordinary Gram matrix of the selected positions), and the style loss is

  L = sum_l w_l sum_r α_r E(G_r^l, A_r^l),     E = `nst_jax.losses.style_layer_loss`,

where A_r^l is the guided Gram matrix of the style image with its own guides.

Luan et al. (2017, Deep Photo Style Transfer) normalise differently, by the guide's mass times the channel count,

  G_r = (F ⊙ m_r)^T (F ⊙ m_r) / (C · H·W · mean(m_r)) = ... / (C · sum(m_r)),

(`normalization="channels_mass"`), and weight each region's loss by the mean of its content guide at that layer
(`region_weights`, see `nst_jax.losses.segmentation.region_means`). For binary guides the two Gram matrices differ
by the factor 1/C only; fractional guides (region borders after the 3x3 averages) count once instead of squared.

Guides are carried through the network
the way Gatys et al.'s and Luan et al.'s guided style code do: a 3x3 box average for every 3x3 convolution (so a
guide fades out over one receptive-field step at region borders), nothing for ReLU, and a 2x2 stride-2 average for
every pooling layer (VALID, like `nst_jax.models.vgg.pool`, so guide shapes equal the feature shapes).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.io import image_io
from nst_jax.models import vgg
from nst_jax.losses import gram_product, layer_weights_or_equal, style_layer_loss

# Below this guide mass a region counts as absent at a layer: its Gram matrix is 0 (instead of 0/0) and its loss
# term is dropped. Any real region has mass >= one pixel's worth of a small guide value, far above this.
_EMPTY_MASS = 1e-8
GRAM_NORMALIZATIONS = ("squared_mass", "channels_mass")  # Gatys et al. 2017 | Luan et al. 2017


def _box3(masks: jax.Array) -> jax.Array:
  """3x3 box average of (R, H, W) masks over the in-image taps only, so a guide of ones stays exactly one at the
  borders (zero padding alone would darken every border, as if the region ended there)."""
  def window_sum(x: jax.Array) -> jax.Array:
    return jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 3, 3), (1, 1, 1), ((0, 0), (1, 1), (1, 1)))
  # The tap count depends on the shape only; computed with NumPy it is a trace-time constant.
  _, h, w = masks.shape
  ones = np.pad(np.ones((h, w)), 1)
  count = sum(ones[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3))
  return window_sum(masks) / jnp.asarray(count, masks.dtype)


def masks_at_layers(arch: str, masks: jax.Array, layers: Sequence[str], *,
                    pooling: str = "avg") -> dict[str, jax.Array]:
  """Carries image-space guides (R, H, W) through `arch`'s layer sequence; returns {layer: (R, h_l, w_l)}.

  Convolutions become 3x3 box averages, ReLUs leave the guides alone, pools are 2x2 stride-2 `pooling` ('avg', the
  usual choice, or 'max' to let a region claim every pooled cell it touches) with odd sizes floored as in
  `nst_jax.models.vgg.pool`. Nothing past the deepest requested layer is computed.
  """
  if masks.ndim != 3:
    raise ValueError(f"masks must be (regions, height, width), got shape {masks.shape}")
  last = vgg.deepest_layer(arch, layers)
  wanted = set(layers)
  x = jnp.asarray(masks, jnp.float32)
  out: dict[str, jax.Array] = {}
  for name in vgg.layer_names(arch):
    if name.startswith("conv"):
      x = _box3(x)
    elif name.startswith("pool"):
      x = vgg.pool(x[..., None], pooling)[..., 0]  # regions as the batch axis, one channel
    if name in wanted:
      out[name] = x
    if name == last:
      break
  return out


def guided_gram(features: jax.Array, masks: jax.Array, *, normalization: str = "squared_mass",
                partition: Sequence[Mapping[str, Any]] | None = None) -> jax.Array:
  """Guided Gram matrices G_r = (F ⊙ m_r)^T (F ⊙ m_r) / mass_r of features under R guides: (R, C, C).

  With 'squared_mass' (Gatys et al.) mass_r = sum(m_r^2), and a guide of ones gives `nst_jax.losses.gram_matrix`;
  with 'channels_mass' (Luan et al.) mass_r = C sum(m_r). An empty guide gives zeros (not NaN).

  Args:
    features: (1, h, w, C) or (h, w, C) features.
    masks: (R, h, w) guides at the features' resolution (`masks_at_layers`).
    normalization: 'squared_mass' or 'channels_mass' (`gram_mass`).
    partition: `guide_partition(masks)`: the same sums taken for each group of pixels over the guides that cover
      it only, h·w·C² multiply-adds times the mean number of guides per pixel (about one for segmentation maps)
      instead of R·h·w·C², and no (R, h·w, C) array of weighted features.

  Returns:
    (R, C, C) float32.
  """
  if normalization not in GRAM_NORMALIZATIONS:
    raise ValueError(f"normalization must be one of {GRAM_NORMALIZATIONS}, got {normalization!r}")
  if features.ndim == 4:
    if features.shape[0] != 1:
      raise ValueError(f"guided_gram takes one image, got a batch of {features.shape[0]}")
    features = features[0]
  h, w, c = features.shape
  if masks.shape[1:] != (h, w):
    raise ValueError(f"guides of shape {masks.shape[1:]} do not match features of shape {(h, w)}")
  masks = masks.astype(jnp.float32)
  if partition is None:
    gram = gram_product(features.reshape(1, h * w, c) * masks.reshape(-1, h * w, 1).astype(features.dtype))
  else:
    flat, guides = features.reshape(h * w, c), masks.reshape(-1, h * w)
    gram = jnp.zeros((masks.shape[0], c, c), jnp.float32)
    for group in partition:
      pixels, covering = group["pixels"], group["regions"]
      weights = guides[covering][:, pixels][..., None].astype(flat.dtype)       # (k, n, 1)
      gram = gram.at[covering].add(gram_product(flat[pixels][None] * weights))
  return gram / gram_mass(masks, channels=c, normalization=normalization)[:, None, None]


def guide_partition(masks: np.ndarray, *, max_groups: int = 32) -> tuple[dict[str, np.ndarray], ...]:
  """The pixels of (R, h, w) guides grouped by which guides cover them (are nonzero there), for `guided_gram`.

  Returns one {"pixels": (n,) flat indices, "regions": (k,) the guides covering them} per set of guides that
  occurs. Inside a segmentation region a pixel has one guide; only borders (widened at deeper layers by the 3x3
  carrying) have two or more. Pixels no guide covers are in no group (they add to no Gram matrix). Beyond
  `max_groups` sets (noisy soft masks could make up to 2^R), the smallest groups are merged into one whose regions
  are the union of theirs (still exact: a guide that is zero on a pixel adds nothing), so the loss stays a bounded
  number of products. Computed on the host: the array sizes are part of the shapes a jitted loss is traced with."""
  flat = np.asarray(masks).reshape(np.shape(masks)[0], -1) != 0
  keys = np.packbits(flat, axis=0, bitorder="little")                      # (ceil(R / 8), h*w) bit sets
  sets, group = np.unique(keys, axis=1, return_inverse=True)
  group = np.reshape(group, -1)
  groups = []
  for g in range(sets.shape[1]):
    regions = np.flatnonzero(np.unpackbits(sets[:, g], bitorder="little")[:flat.shape[0]]).astype(np.int32)
    if regions.size:
      groups.append({"pixels": np.flatnonzero(group == g).astype(np.int32), "regions": regions})
  if len(groups) > max_groups:
    groups.sort(key=lambda g: -len(g["pixels"]))
    rest = groups[max_groups - 1:]
    groups = groups[:max_groups - 1] + [{
        "pixels": np.sort(np.concatenate([g["pixels"] for g in rest])),
        "regions": np.unique(np.concatenate([g["regions"] for g in rest])).astype(np.int32)}]
  return tuple(groups)


def gram_mass(masks: jax.Array, *, channels: int, normalization: str = "squared_mass") -> jax.Array:
  """The (R,) divisors of the guided Gram matrices of (R, h, w) guides: sum(m^2) or C * sum(m).

  At least a tiny positive number (an empty guide gives a zero Gram matrix, not NaN). Shared with the tiled engine
  (`nst_jax.highres`), which accumulates the numerator tile by tile and divides by the whole image's mass."""
  masks = jnp.asarray(masks, jnp.float32)
  # max(), not + eps: the ones guide must reproduce gram_matrix's division by H*W exactly.
  if normalization == "squared_mass":
    return jnp.maximum(jnp.sum(jnp.square(masks), axis=(1, 2)), _EMPTY_MASS)
  return channels * jnp.maximum(jnp.sum(masks, axis=(1, 2)), _EMPTY_MASS)


def present(masks: jax.Array) -> jax.Array:
  """(R,) whether each of (R, h, w) guides has any mass: absent regions contribute nothing to the style loss."""
  return jnp.sum(jnp.square(jnp.asarray(masks, jnp.float32)), axis=(1, 2)) > _EMPTY_MASS


def guided_style_loss(*, features: Mapping[str, jax.Array], target_grams: Mapping[str, jax.Array],
                      masks: Mapping[str, jax.Array], region_weights: jax.Array | None = None,
                      layer_weights: Mapping[str, float] | None = None,
                      normalization: str = "squared_mass",
                      partitions: Mapping[str, Mapping[str, Any]] | None = None) -> jax.Array:
  """Guided style loss L = sum_l w_l sum_r α_r E(G_r^l, A_r^l) over the layers in `target_grams`.

  E is `nst_jax.losses.style_layer_loss` and G_r^l the image's guided Gram matrix (`guided_gram`). A region whose
  guide is empty at a layer contributes nothing there: with no pixels of that region there is no texture to match,
  and its constant term E(0, A_r) would only offset the loss.

  Args:
    features: {layer: features} of the image being optimised.
    target_grams: {layer: (R, C, C) guided Gram matrices A_r^l of the styles}, made with the same `normalization`.
    masks: {layer: (R, h, w) guides of the image being optimised} (`masks_at_layers`).
    region_weights: (R,) α_r; default 1.
    layer_weights: {layer: w_l}; default 1 / (number of layers), as in `nst_jax.losses.style_loss`.
    normalization: 'squared_mass' or 'channels_mass' (`guided_gram`).
    partitions: {layer: `guide_partition` of that layer's guides}: cheaper Gram matrices, the same values.

  Returns:
    The scalar loss.
  """
  weights = layer_weights_or_equal(list(target_grams), layer_weights)
  total = jnp.zeros((), jnp.float32)
  for name, target in target_grams.items():
    guides = masks[name].astype(jnp.float32)
    gram = guided_gram(features[name], guides, normalization=normalization,
                       partition=None if partitions is None else partitions[name])
    per_region = style_layer_loss(gram=gram, target_gram=target)
    alpha = jnp.ones_like(per_region) if region_weights is None else jnp.asarray(region_weights, jnp.float32)
    total = total + weights[name] * jnp.sum(jnp.where(present(guides), alpha * per_region, 0.0))
  return total


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
  """Antialiased bilinear resize of an (H, W) guide to (height, width), in float precision.

  Bilinear rather than the Lanczos of `nst_jax.io.image_io.resize`: Lanczos rings at hard region borders, which would
  leak a few percent of a region into its neighbour and dent the inside; a triangle filter (widened by Pillow when
  shrinking, hence antialiased) is monotone, so every value stays within the range of its neighbourhood."""
  mask = np.asarray(mask, np.float32)
  if mask.shape == (height, width):
    return mask
  from PIL import Image  # pylint: disable=import-outside-toplevel (only a resize needs Pillow; see image_io)
  resized = Image.fromarray(np.ascontiguousarray(mask), mode="F").resize((width, height),
                                                                          Image.Resampling.BILINEAR)
  return np.clip(np.asarray(resized, np.float32), 0.0, 1.0)


def load_mask(path: str | os.PathLike, *, height: int, width: int, what: str = "mask") -> np.ndarray:
  """A guide image read as an (height, width) float32 array in [0, 1] (white = in the region).

  The mean of its RGB channels, resized if it does not have the content image's size (with an `NSTWarning` when
  that changes its aspect ratio). Unreadable files raise `NSTError`; `what` names the file in messages."""
  gray = image_io.load_image(path, what=what).mean(axis=-1)
  image_io.warn_if_stretched(gray.shape, (height, width), what=f"{what} {str(path)!r}")
  return resize_mask(gray, height, width)
