"""Colour-coded semantic segmentation maps of Luan et al. (2017) turned into matched content/style region masks.

A map paints each semantic region in one of nine colours (`COLORS`). Anti-aliased edges blend neighbouring colours;
the reference code keeps a pixel only when every channel is within 0.1 of a colour, silently dropping the blended
pixels (they then belong to no region and get no style). Here every pixel is assigned:

1. A colour is *present* in a map when it has core pixels: pixels within 0.1 of it in every channel (the
   reference's test) whose whole 3x3 neighbourhood passes the test too, at least `MIN_CORE_FRACTION` of the map.
   A blend line one or two pixels wide has no core, so e.g. the grey midpoint of a black/white edge does not
   invent a grey region.
2. Every pixel goes to a present colour: the one it is within 0.1 of, or for blends the nearest (RGB) among
   the colours of the pixels around it (`snap`). Blends thus join one of the regions they separate, never a third
   colour that happens to lie between them in RGB.
3. The one-hot masks are resized to the image with `nst_jax.losses.guidance.resize_mask` (bilinear, antialiased), so a
   map whose size differs from its photo (pair 7 of the paper is off by one pixel) is resized, not refused, and
   the resized masks still sum to one at every pixel.

Matching. Each colour present in both maps is one region, styled by the style image's pixels of that colour.
Colours present only in the content map are merged into one extra region styled by the whole style image (the
reference would give them an all-zero target Gram matrix, i.e. push their features to zero); colours present
only in the style map have no pixels to style and are ignored. Without maps, or with maps that share no colour,
the whole image is one region styled by the whole style image.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from nst_jax.io import image_io
from nst_jax.losses import guidance
from nst_jax.errors import NSTError

COLORS: dict[str, tuple[float, float, float]] = {
    "blue": (0.0, 0.0, 1.0), "green": (0.0, 1.0, 0.0), "black": (0.0, 0.0, 0.0), "white": (1.0, 1.0, 1.0),
    "red": (1.0, 0.0, 0.0), "yellow": (1.0, 1.0, 0.0), "grey": (0.5, 0.5, 0.5), "lightblue": (0.0, 1.0, 1.0),
    "purple": (1.0, 0.0, 1.0),
}
TOLERANCE = 0.1            # the reference's per-channel threshold
MIN_CORE_FRACTION = 1e-4   # of the map's pixels; at least one pixel
UNMATCHED = "unmatched"    # the region of content colours that the style map lacks


@dataclasses.dataclass(frozen=True)
class Segmentation:
  """Matched region masks: `content` (R, H, W) in content space, `style` (R, h, w) in style space, `names` (R,)."""

  names: tuple[str, ...]
  content: np.ndarray
  style: np.ndarray


def present_colors(seg: np.ndarray) -> list[str]:
  """The colours of `COLORS` with core pixels in an (H, W, 3) map in [0, 1] (see the module docstring)."""
  seg = np.asarray(seg, np.float32)
  need = max(1, int(MIN_CORE_FRACTION * seg.shape[0] * seg.shape[1]))
  present = []
  for name in COLORS:
    core = ndimage.binary_erosion(_close(seg, name), structure=np.ones((3, 3), bool), border_value=1)
    if int(core.sum()) >= need:
      present.append(name)
  return present


def _close(seg: np.ndarray, name: str) -> np.ndarray:
  return np.all(np.abs(seg - np.asarray(COLORS[name], np.float32)) < TOLERANCE, axis=-1)


def snap(seg: np.ndarray, colors: Sequence[str]) -> np.ndarray:
  """(H, W) index into `colors` for every pixel of an (H, W, 3) map.

  A pixel within `TOLERANCE` of a colour takes it. Any other pixel (a blend) takes the nearest colour in RGB among
  the colours of the nearest such pixels (within 1, else 2, else 3 pixels), i.e. one of the regions it separates;
  the middle of the RGB cube is equidistant from blue, red, black and white, so a global nearest colour could be a
  region that is not there. A blend with no such pixel within 3 pixels takes the globally nearest colour.
  """
  seg = np.asarray(seg, np.float32)
  palette = np.asarray([COLORS[c] for c in colors], np.float32)
  distances = np.sum(np.square(seg[..., None, :] - palette), axis=-1)            # (H, W, K)
  exact = np.stack([_close(seg, c) for c in colors], axis=-1)
  labels = np.argmin(distances, axis=-1)  # the fallback
  done = exact.any(axis=-1)
  labels = np.where(done, np.argmax(exact, axis=-1), labels)
  for radius in (1, 2, 3):  # the nearest ring of assigned pixels decides
    square = np.ones((2 * radius + 1,) * 2, bool)
    nearby = np.stack([ndimage.binary_dilation(exact[..., k], structure=square) for k in range(len(colors))], -1)
    local = np.where(nearby, distances, np.inf)
    found = ~done & np.isfinite(local.min(axis=-1))
    labels = np.where(found, np.argmin(local, axis=-1), labels)
    done |= found
  return labels


def one_hot_masks(seg: np.ndarray, colors: Sequence[str], *, height: int, width: int) -> dict[str, np.ndarray]:
  """{colour: (height, width) mask} of a map snapped to `colors`; the masks sum to 1 at every pixel."""
  labels = snap(seg, colors)
  return {c: guidance.resize_mask((labels == i).astype(np.float32), height, width) for i, c in enumerate(colors)}


def match(content_seg: np.ndarray | None, style_seg: np.ndarray | None, *, content_shape: tuple[int, int],
          style_shape: tuple[int, int]) -> Segmentation:
  """Matched region masks for a content image of `content_shape` and a style image of `style_shape`.

  The maps may have any size; both maps or neither. The module docstring gives the rules."""
  if (content_seg is None) != (style_seg is None):
    raise NSTError("give both `content_seg` and `style_seg`, or neither")
  ones_c, ones_s = np.ones(content_shape, np.float32), np.ones(style_shape, np.float32)
  if content_seg is None:
    return Segmentation(names=("all",), content=ones_c[None], style=ones_s[None])
  in_content, in_style = present_colors(content_seg), present_colors(style_seg)
  if not in_content:
    raise NSTError(f"`content_seg` uses none of the colours {', '.join(COLORS)}")
  if not in_style:
    raise NSTError(f"`style_seg` uses none of the colours {', '.join(COLORS)}")
  common = [c for c in in_content if c in in_style]
  if not common:
    return Segmentation(names=("all",), content=ones_c[None], style=ones_s[None])
  content_masks = one_hot_masks(content_seg, in_content, height=content_shape[0], width=content_shape[1])
  style_masks = one_hot_masks(style_seg, in_style, height=style_shape[0], width=style_shape[1])
  names = list(common)
  content = [content_masks[c] for c in common]
  style = [style_masks[c] for c in common]
  only_content = [c for c in in_content if c not in in_style]
  if only_content:
    names.append(UNMATCHED)
    content.append(np.clip(sum(content_masks[c] for c in only_content), 0.0, 1.0))
    style.append(ones_s)
  return Segmentation(names=tuple(names), content=np.stack(content), style=np.stack(style))


def load_map(path: str | os.PathLike, *, what: str) -> np.ndarray:
  """A segmentation map as (H, W, 3) float32 RGB in [0, 1]; unreadable files raise `NSTError` naming `what`."""
  return image_io.load_image(path, what=what)


def region_means(masks: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
  """{layer: (R,) mean of each region's guide at that layer}: Luan et al.'s per-region loss weights."""
  return {name: jnp.mean(m.astype(jnp.float32), axis=(1, 2)) for name, m in masks.items()}


def style_targets(arch: str, style_features: Mapping[str, jax.Array], style_masks: np.ndarray,
                  layers: Sequence[str], *, pooling: str = "avg",
                  normalization: str = "channels_mass") -> dict[str, jax.Array]:
  """{layer: (R, C, C)} guided Gram targets of the style image's features under its region masks.

  `style_masks` (R, h, w) are given at the size of the image the features were computed from and carried through
  the network here (`guidance.masks_at_layers`)."""
  carried = guidance.masks_at_layers(arch, jnp.asarray(style_masks), layers, pooling=pooling)
  return {name: guidance.guided_gram(style_features[name], carried[name], normalization=normalization)
          for name in layers}
