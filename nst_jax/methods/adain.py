"""Arbitrary style transfer in real time with adaptive instance normalisation (Huang & Belongie 2017).

A fixed VGG encoder maps an image to its relu4_1 features; AdaIN gives the content features the channel-wise mean
and standard deviation of the style's features,

  AdaIN(x, y) = sigma(y) (x - mu(x)) / sigma(x) + mu(y)        (statistics over space, per image and channel),

and a decoder (the encoder mirrored: reflection-padded 3x3 convolutions, nearest-neighbour upsampling instead of
pooling) maps the result back to an image. The decoder is trained so that the encoder of its output reproduces the
AdaIN target at relu4_1 (content loss) and the style's mean/std at relu1_1..relu4_1 (style loss); after that one
forward pass stylises with any style.

Controls (paper, section 7): the content-style trade-off alpha (interpolate the target with the content features),
interpolation between several styles with weights, spatial control with masks (each region's content features are
normalised with that region's own statistics and take one style's statistics), and colour preservation (the
project's `nst_jax.losses.color`: luminance-only transfer or style colour matching).

Any resolution: above a pixel budget the content is processed in overlapping tiles that are blended with linear
ramps, and every tile is normalised with the content statistics of a thumbnail of the whole image instead of its
own (Chen et al. 2022, "Towards Ultra-Resolution Neural Style Transfer via Thumbnail Instance Normalization"), so
tiles cannot disagree about the colour and contrast of the result.

The decoder and its checkpoint are in `nst_jax.models.adain_decoder`; training is in `adain_train`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.errors import NSTError
from nst_jax.io import image_io
from nst_jax.losses import color
from nst_jax.models import vgg
from nst_jax.models.adain_decoder import ENCODER_LAYER, DecoderCheckpoint, check_encoder, decode
from nst_jax.models.preprocessing import Preprocessing
from nst_jax.weights.format import VGGWeights

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
EPS = 1e-5
COLOR_MODES = color.COLOR_MODES

# ----------------------------------------------------------------------------------------------------------------
# The AdaIN operation and its controls (pure jnp; NHWC features)


def feature_stats(feats: jax.Array, *, mask: jax.Array | None = None,
                  eps: float = EPS) -> tuple[jax.Array, jax.Array]:
  """Per-image, per-channel mean and standard deviation over space, each (N, 1, 1, C).

  With a mask ((H, W) or (N, H, W, 1), non-negative weights) the statistics are those of the mask-weighted
  positions. The standard deviation is sqrt(variance + eps), so a flat channel does not divide by zero.
  """
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

  Without masks: t = sum_k w_k AdaIN_k(f), the weights normalised to sum 1 (style interpolation). With masks
  ((K, H, W) at the feature resolution, summing to 1 at every position): t = sum_k m_k AdaIN_k(f) where style k's
  AdaIN standardises f with the statistics of region k only (spatial control). `content_stats` (one per style, or
  one shared when there are no masks) replaces the statistics of `content_feats` itself: tiles use the statistics
  of a thumbnail of the whole image. Finally t <- alpha t + (1 - alpha) f.
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
  """Mean squared difference between the encoder's relu4_1 features of the output and the AdaIN target."""
  return jnp.mean(jnp.square(output_feats - target))


def style_stats_loss(*, output_feats: Mapping[str, jax.Array], style_feats: Mapping[str, jax.Array],
                     layers: Sequence[str] = STYLE_LAYERS, eps: float = EPS) -> jax.Array:
  """Sum over layers of the mean squared differences of the channel means and of the channel stds."""
  total = 0.0
  for layer in layers:
    o_mean, o_std = feature_stats(output_feats[layer], eps=eps)
    s_mean, s_std = feature_stats(style_feats[layer], eps=eps)
    total = total + jnp.mean(jnp.square(o_mean - s_mean)) + jnp.mean(jnp.square(o_std - s_std))
  return total



DEFAULT_MAX_PIXELS = 2048 * 1024  # larger contents go through tiles


# ----------------------------------------------------------------------------------------------------------------
# Inference


@dataclasses.dataclass(frozen=True)
class Model:
  """An encoder and a decoder that belong together (see `make_model`)."""

  arch: str
  width: int
  preprocessing: Preprocessing
  enc_params: Any
  dec_params: Any


def make_model(weights: VGGWeights, ckpt: DecoderCheckpoint) -> Model:
  check_encoder(ckpt, weights)
  enc = jax.device_put(vgg.params_for(weights.arch, weights.params, STYLE_LAYERS))
  return Model(weights.arch, ckpt.width, weights.preprocessing, enc, jax.device_put(ckpt.params))


@functools.partial(jax.jit, static_argnames=("arch", "preprocessing", "layers"))
def _encode_jit(enc_params, images, *, arch, preprocessing, layers):
  return encode(enc_params, images, arch=arch, preprocessing=preprocessing, layers=layers)


@functools.partial(jax.jit, static_argnames=("arch", "width"))
def _decode_jit(dec_params, content_feats, style_stats, style_weights, masks, content_stats, alpha, *, arch, width):
  target = adain_target(content_feats, style_stats=style_stats, style_weights=style_weights, masks=masks,
                        content_stats=content_stats, alpha=alpha)
  return decode(dec_params, target, arch=arch, width=width)


def pad_to_multiple(image: np.ndarray, multiple: int = 8) -> np.ndarray:
  h, w = image.shape[:2]
  ph, pw = (-h) % multiple, (-w) % multiple
  if ph == 0 and pw == 0:
    return image
  mode = "reflect" if ph < h and pw < w else "edge"
  return np.pad(image, ((0, ph), (0, pw), (0, 0)), mode=mode)


def features(model: Model, image: np.ndarray, layers: tuple[str, ...] = (ENCODER_LAYER,)) -> dict[str, jax.Array]:
  return _encode_jit(model.enc_params, jnp.asarray(image, jnp.float32)[None], arch=model.arch,
                     preprocessing=model.preprocessing, layers=layers)


def masks_at(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  """(K, H, W) masks -> (K, h, w) area-averaged to `shape`, normalised to sum 1 at every position (an uncovered
  position is shared equally)."""
  small = np.stack([image_io.resize(m[..., None].astype(np.float32), *shape)[..., 0] for m in masks])
  small = np.clip(small, 0.0, None)
  total = small.sum(axis=0, keepdims=True)
  return np.where(total > 1e-6, small / np.maximum(total, 1e-6), 1.0 / len(masks)).astype(np.float32)


def _region_stats(feats: jax.Array, masks: np.ndarray | None) -> list[Stats]:
  if masks is None:
    return [feature_stats(feats)]
  small = masks_at(masks, feats.shape[1:3])
  return [feature_stats(feats, mask=jnp.asarray(m)) for m in small]


@dataclasses.dataclass(frozen=True)
class Tiling:
  """How a large content image is cut: square tiles of `tile` px overlapping by `overlap` px (multiples of 8), and
  the long side of the thumbnail whose statistics normalise every tile."""

  tile: int = 1024
  overlap: int = 128
  thumbnail: int = 1024

  def __post_init__(self) -> None:
    if self.tile < 32 or self.tile % 8:
      raise NSTError(f"--tile_size must be a multiple of 8 and at least 32 px, got {self.tile}")
    if self.overlap < 0 or self.overlap % 8 or 2 * self.overlap >= self.tile:
      raise NSTError(f"tile overlap must be a multiple of 8 below half the tile ({self.tile}), got {self.overlap}")
    if self.thumbnail < 16:
      raise NSTError(f"thumbnail size must be at least 16 px, got {self.thumbnail}")


def tiling_for_budget(max_pixels: int) -> Tiling:
  """Tiles of at most `max_pixels` (a multiple of 8 on each side) overlapping by 1/8, thumbnail of the same size."""
  tile = max(64, int(math.sqrt(max_pixels)) // 8 * 8)
  return Tiling(tile=tile, overlap=max(8, tile // 8 // 8 * 8), thumbnail=tile)


def tile_count(shape: tuple[int, int], tiling: Tiling) -> int:
  """How many tiles `stylize` cuts an (H, W) content into with `tiling`."""
  h, w = shape
  th, tw = min(tiling.tile, h + (-h) % 8), min(tiling.tile, w + (-w) % 8)
  return len(tile_starts(max(h, th), th, tiling.overlap)) * len(tile_starts(max(w, tw), tw, tiling.overlap))


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
  if length <= tile:
    return [0]
  step = tile - overlap
  starts = list(range(0, length - tile, step)) + [length - tile]
  return sorted(set(starts))


def _ramp(length: int, overlap: int, first: bool, last: bool) -> np.ndarray:
  """Blending weights along one tile axis: linear ramps over the overlaps with neighbours, 1 elsewhere."""
  w = np.ones(length, np.float32)
  if overlap > 0:
    ramp = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
    if not first:
      w[:overlap] = ramp
    if not last:
      w[-overlap:] = ramp[::-1]
  return w


def stylize(content: np.ndarray, styles: Sequence[np.ndarray], *, model: Model, alpha: float = 1.0,
            style_weights: Sequence[float] | None = None, masks: np.ndarray | None = None,
            preserve_colors: str = "none", max_pixels: int = DEFAULT_MAX_PIXELS,
            tiling: Tiling | None = None) -> np.ndarray:
  """Stylised (H, W, 3) float image in [0, 1] of `content` with `styles` (any sizes), in one decoder pass.

  Images above `max_pixels` (or any image when `tiling` is given) go through tiles normalised with the statistics
  of a thumbnail of the whole content (URST); otherwise the content's own statistics are used. `masks` ((K, H, W)
  in content space, one per style) give spatial control; `style_weights` interpolate styles (not with masks).
  """
  if not styles:
    raise NSTError("--style: at least one style image is needed")
  if not 0.0 <= alpha <= 1.0:
    raise NSTError(f"--alpha must be in [0, 1], got {alpha}")
  if preserve_colors not in COLOR_MODES:
    raise NSTError(f"--preserve_colors must be one of {', '.join(COLOR_MODES)}, got {preserve_colors!r}")
  if style_weights is not None:
    if masks is not None:
      raise NSTError("--style_blend and --style_masks cannot be combined: masks decide where each style goes")
    if len(style_weights) != len(styles):
      raise NSTError(f"--style_blend needs one weight per style ({len(styles)}), got {len(style_weights)}")
    if any(not math.isfinite(w) or w < 0 for w in style_weights) or sum(style_weights) <= 0:
      raise NSTError(f"--style_blend weights must be non-negative with a positive sum, got {list(style_weights)}")
  if masks is not None and (len(masks) != len(styles) or masks.shape[1:] != content.shape[:2]):
    raise NSTError(f"--style_masks needs one mask per style ({len(styles)}) of the content's size")
  original = np.asarray(content, np.float32)
  styles = [np.asarray(s, np.float32) for s in styles]
  if preserve_colors == "histogram":
    styles = [color.match_color_histogram(s, original, clip=True) for s in styles]
  elif preserve_colors == "luminance":
    styles = [color.match_luminance(s, original, clip=True) for s in styles]
    content = np.asarray(color.luminance_image(original))
  style_stats = [feature_stats(features(model, pad_to_multiple(s))[ENCODER_LAYER]) for s in styles]
  weights = jnp.asarray(style_weights if style_weights is not None else [1.0] * len(styles), jnp.float32)
  h, w = content.shape[:2]
  if tiling is None and h * w <= max_pixels:
    out = _stylize_whole(content, model=model, style_stats=style_stats, weights=weights, masks=masks, alpha=alpha)
  else:
    out = _stylize_tiled(content, model=model, style_stats=style_stats, weights=weights, masks=masks, alpha=alpha,
                         tiling=tiling or tiling_for_budget(max_pixels))
  if not np.all(np.isfinite(out)):
    raise NSTError("the decoder produced non-finite values; the decoder file may be damaged")
  out = np.clip(out, 0.0, 1.0)
  if preserve_colors == "luminance":
    out = np.asarray(color.combine_luminance(stylized=out, content=original))
  return out


def _stylize_whole(content, *, model, style_stats, weights, masks, alpha) -> np.ndarray:
  h, w = content.shape[:2]
  padded = pad_to_multiple(content)
  feats = features(model, padded)[ENCODER_LAYER]
  small = None
  if masks is not None:
    padded_masks = np.stack([pad_to_multiple(m[..., None])[..., 0] for m in masks])
    small = jnp.asarray(masks_at(padded_masks, feats.shape[1:3]))
  out = _decode_jit(model.dec_params, feats, style_stats, weights, small, None, jnp.float32(alpha),
                    arch=model.arch, width=model.width)
  return np.asarray(out[0, :h, :w])


def _stylize_tiled(content, *, model, style_stats, weights, masks, alpha, tiling: Tiling) -> np.ndarray:
  h, w = content.shape[:2]
  thumb_shape = image_io.long_side_shape(content.shape, min(tiling.thumbnail, max(h, w)))
  thumb = pad_to_multiple(image_io.resize(content, *thumb_shape))
  thumb_masks = None
  if masks is not None:
    thumb_masks = np.stack([pad_to_multiple(image_io.resize(m[..., None], *thumb_shape))[..., 0] for m in masks])
  content_stats = _region_stats(features(model, thumb)[ENCODER_LAYER], thumb_masks)
  # Every tile has the same shape (the image is reflect-padded up to a whole tile when smaller), so one
  # compilation of the encoder and of the decoder serves all tiles.
  th, tw = min(tiling.tile, h + (-h) % 8), min(tiling.tile, w + (-w) % 8)
  padded = content
  if h < th or w < tw:
    padded = np.pad(content, ((0, th - h), (0, tw - w), (0, 0)), mode="reflect" if th - h < h and tw - w < w
                    else "edge")
  ph, pw = padded.shape[:2]
  acc = np.zeros((ph, pw, 3), np.float32)
  norm = np.zeros((ph, pw, 1), np.float32)
  ys, xs = tile_starts(ph, th, tiling.overlap), tile_starts(pw, tw, tiling.overlap)
  for i, y in enumerate(ys):
    for j, x in enumerate(xs):
      tile = padded[y:y + th, x:x + tw]
      feats = features(model, tile)[ENCODER_LAYER]
      small = None
      if masks is not None:
        tile_masks = np.stack([np.pad(m, ((0, ph - h), (0, pw - w)), mode="edge")[y:y + th, x:x + tw]
                               for m in masks])
        small = jnp.asarray(masks_at(tile_masks, feats.shape[1:3]))
      out = np.asarray(_decode_jit(model.dec_params, feats, style_stats, weights, small, content_stats,
                                   jnp.float32(alpha), arch=model.arch, width=model.width)[0])
      ramp = (_ramp(th, tiling.overlap, i == 0, i == len(ys) - 1)[:, None]
              * _ramp(tw, tiling.overlap, j == 0, j == len(xs) - 1)[None, :])[..., None]
      acc[y:y + th, x:x + tw] += out * ramp
      norm[y:y + th, x:x + tw] += ramp
  return (acc / np.maximum(norm, 1e-8))[:h, :w]
