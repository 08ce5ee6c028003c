"""Universal style transfer (Li et al. 2017): the coarse-to-fine WCT cascade over the encoder's levels.

For each level l of relu5_1, relu4_1, ..., relu1_1 (or the chosen subset, deepest first): encode the current image
to relu_l, whiten and colour its features with the style's (`nst_jax.methods.wct.ops.transform`; several styles
blended, or one per masked region), blend with the image's own features by alpha, and decode with that level's
reconstruction decoder (`nst_jax.models.wct_decoder`); the decoded image is the next level's input. The deep
levels lay down the style's large shapes, the shallow ones its colours and fine texture.

A style is needed only as its per-level mean and colouring matrix (`style_transforms`), computed with one encoder
pass. Images are reflect-padded to a multiple of the deepest level's stride, and the padding is left out of the
content statistics. Above a pixel budget every level runs in overlapping tiles blended with linear ramps
(`nst_jax.methods.blend_tiles`): a first pass over the tiles sums the content's moments over the whole image (each
position counted once, by the ramps' partition of unity), a second whitens every tile with them, colours, decodes
and blends; so the transform is the whole image's, whatever the tiling.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from nst_jax.errors import NSTError
from nst_jax.io import image_io, video
from nst_jax.losses import color
from nst_jax.methods import blend_tiles, frame_batches
from nst_jax.methods.wct import ops
from nst_jax.models import vgg, wct_decoder
from nst_jax.models.preprocessing import Preprocessing
from nst_jax.weights.format import VGGWeights

COLOR_MODES = color.COLOR_MODES
# Larger (padded) contents go through tiles: at 1024x1024 the cascade's largest activations (relu1_1's 64 channels
# at full size and the decoders' widest layers) take ~1.5 GB.
DEFAULT_MAX_PIXELS = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Model:
  """The encoder and the decoders of the levels, ready to run (`make_model`)."""

  arch: str
  preprocessing: Preprocessing
  enc_params: Any
  decoders: Mapping[str, wct_decoder.LevelDecoder]  # parameters on the device
  encoder_id: str
  default_levels: tuple[str, ...] = ()  # what `stylize` runs without `levels` (empty: every level)

  @property
  def levels(self) -> tuple[str, ...]:
    """The levels this model has decoders for, coarse to fine."""
    return tuple(layer for layer in wct_decoder.LEVELS if layer in self.decoders)

  def spec(self, layer: str) -> tuple:
    """The static (hashable) part of a level that selects its compiled executable."""
    d = self.decoders[layer]
    return (self.arch, self.preprocessing, layer, d.width, d.padding, d.input_scale, d.upsampling)


def check_encoder(weights: VGGWeights, decoders: wct_decoder.DecoderSet) -> None:
  """NSTError unless `decoders` were trained with the encoder `weights`."""
  if decoders.arch != weights.arch or decoders.encoder_sha256 != weights.source_sha256:
    raise NSTError(f"--decoders were trained with the {decoders.arch} encoder sha256 {decoders.encoder_sha256[:12]} "
                   f"({decoders.encoder_source}), but --weights is {weights.arch} sha256 "
                   f"{weights.source_sha256[:12]} ({weights.source}); use the matching --weights or decoders")


def make_model(weights: VGGWeights, decoders: wct_decoder.DecoderSet) -> Model:
  """The model of a decoder file and the encoder weights it was trained with (NSTError for any other pair)."""
  check_encoder(weights, decoders)
  unpooling = [layer for layer, level in decoders.levels.items() if level.upsampling != "nearest"]
  if unpooling:
    raise NSTError(f"--decoders unpool at {', '.join(unpooling)} (PhotoWCT decoders, which need the content's "
                   "pooling switches); this cascade decodes with nearest-upsampling WCT decoders")
  levels = {k: dataclasses.replace(v, params=jax.device_put(v.params)) for k, v in decoders.levels.items()}
  deepest = vgg.deepest_layer(weights.arch, tuple(levels))
  enc = jax.device_put(vgg.params_for(weights.arch, weights.params, (deepest,)))
  recommended = decoders.info.get("default_levels") or list(levels)
  default = tuple(layer for layer in wct_decoder.LEVELS if layer in recommended and layer in levels)
  return Model(weights.arch, weights.preprocessing, enc, levels, weights.source_sha256, default)


def _stride(layer: str) -> int:
  return 2 ** (int(layer[4]) - 1)


def _encode(enc_params, image: jax.Array, *, arch: str, preprocessing: Preprocessing,
            layers: tuple[str, ...]) -> dict[str, jax.Array]:
  sub = vgg.params_for(arch, dict(enc_params), layers)
  return vgg.VGG(arch, layers, pooling="max").apply({"params": sub}, preprocessing.apply(image))


def _encode_level(enc_params, image: jax.Array, spec: tuple) -> tuple[jax.Array, jax.Array | None]:
  """A (1, H, W, 3) image's features (H/s, W/s, C) at the spec's level, and its max-pooling switches when the level
  decodes by unpooling (PhotoWCT's decoders), else None."""
  arch, preprocessing, layer = spec[:3]
  if spec[6] == "unpool":
    sub = vgg.params_for(arch, dict(enc_params), (layer,))
    feats, switches = vgg.features_and_switches({"params": sub}, preprocessing.apply(image), arch=arch, layer=layer)
    return feats[0], switches
  return _encode(enc_params, image, arch=arch, preprocessing=preprocessing, layers=(layer,))[layer][0], None


def _decode_level(dec_params, target: jax.Array, switches, spec: tuple) -> jax.Array:
  """The spec's level decoder on (H/s, W/s, C) target features: a (1, H, W, 3) image."""
  arch, _, layer, width, padding, input_scale, upsampling = spec
  level = wct_decoder.LevelDecoder(dec_params, width, padding, input_scale, upsampling=upsampling)
  return wct_decoder.decode(level, target[None], arch=arch, layer=layer, switches=switches)


@functools.partial(jax.jit, static_argnames=("arch", "preprocessing", "layers", "eps"))
def _style_transforms_jit(enc_params, image, *, arch, preprocessing, layers, eps):
  feats = _encode(enc_params, image[None], arch=arch, preprocessing=preprocessing, layers=layers)
  return {layer: ops.style_transform(feats[layer][0], eps=eps) for layer in layers}


def style_transforms(model: Model, style: np.ndarray, *, scales: Mapping[str, float] | None = None,
                     eps: float = ops.EPS) -> dict[str, ops.StyleTransform]:
  """{level: the style's mean and colouring matrix} at every level of the model.

  One encoder pass per distinct scale: a level with a scale in `scales` (the cascade runs it on the image resized by
  it) takes the style resized by the same factor, so its marks keep their size relative to the image."""
  style = np.asarray(style, np.float32)
  scales = dict(scales or {})
  out = {}
  for scale in sorted({scales.get(layer, 1.0) for layer in model.levels}):
    layers = tuple(layer for layer in model.levels if scales.get(layer, 1.0) == scale)
    image = style if scale == 1.0 else image_io.resize(
        style, max(1, round(style.shape[0] * scale)), max(1, round(style.shape[1] * scale)))
    if min(image.shape[:2]) < _stride(layers[0]):
      raise NSTError(f"--style: an image of {style.shape[1]}x{style.shape[0]} px is too small for WCT (at least "
                     f"{math.ceil(_stride(layers[0]) / scale)} px a side)")
    out.update(_style_transforms_jit(model.enc_params, image, arch=model.arch, preprocessing=model.preprocessing,
                                     layers=layers, eps=eps))
  return out


@functools.partial(jax.jit, static_argnames=("spec", "eps"))
def _level_jit(enc_params, dec_params, image, valid, means, colorings, style_weights, masks, alpha, *, spec, eps):
  """One level of the cascade on a (1, H, W, 3) image; `valid` (H/s, W/s) weighs the statistics' positions."""
  feats, switches = _encode_level(enc_params, image, spec)
  styles = [ops.StyleTransform(m, c) for m, c in zip(means, colorings)]
  target = ops.transform(feats, styles, alpha=alpha, style_weights=style_weights, masks=masks, weights=valid,
                         eps=eps)
  return _decode_level(dec_params, target, switches, spec)


@functools.partial(jax.jit, static_argnames=("spec",))
def _tile_sums_jit(enc_params, tile, region_weights, *, spec):
  """`ops.moment_sums` of a tile's features at the level for each (H/s, W/s) region weight map in `region_weights`."""
  feats, _ = _encode_level(enc_params, tile, spec)
  return [ops.moment_sums(feats, w) for w in region_weights]


@functools.partial(jax.jit, static_argnames=("spec", "eps"))
def _tile_level_jit(enc_params, dec_params, tile, stat_means, stat_covs, means, colorings, style_weights, masks,
                    alpha, *, spec, eps):
  """One level on one tile, whitened with the whole image's statistics (one, or one per mask region); an unpooling
  decoder takes the tile's own pooling switches."""
  feats, switches = _encode_level(enc_params, tile, spec)
  styles = [ops.StyleTransform(m, c) for m, c in zip(means, colorings)]
  stats = [ops.Moments(m, c) for m, c in zip(stat_means, stat_covs)]
  target = ops.transform(feats, styles, alpha=alpha, style_weights=style_weights, masks=masks, stats=stats, eps=eps)
  return _decode_level(dec_params, target, switches, spec)


@functools.partial(jax.jit, static_argnames=("spec",))
def _features_jit(enc_params, image, valid, *, spec):
  """A (1, H, W, 3) image's features at the level and their `ops.moment_sums` over the `valid` weights."""
  feats, _ = _encode_level(enc_params, image, spec)
  return feats, ops.moment_sums(feats, valid)


@functools.partial(jax.jit, static_argnames=("spec",))
def _whitened_level_jit(dec_params, feats, mean, whitening, means, colorings, style_weights, alpha, *, spec):
  """One level from a frame's features, whitened with a given mean and whitening matrix (a clip's)."""
  styles = [ops.StyleTransform(m, c) for m, c in zip(means, colorings)]
  target = ops.color_blend((feats - mean) @ whitening, feats, styles, alpha=alpha, style_weights=style_weights)
  return _decode_level(dec_params, target, None, spec)


def _tiled_level(model: Model, layer: str, image: np.ndarray, valid: np.ndarray, masks: np.ndarray | None,
                 transforms, style_weights, alpha: float, tiling: blend_tiles.Tiling, eps: float) -> np.ndarray:
  """One level of the cascade over an (H, W, 3) image (H, W multiples of the deepest stride) in tiles."""
  s = _stride(layer)
  h, w = image.shape[:2]
  multiple = max(16, s)
  th, tw = min(tiling.tile // multiple * multiple, h), min(tiling.tile // multiple * multiple, w)
  overlap = min(tiling.overlap, th // 2 - 8, tw // 2 - 8) // 8 * 8
  windows = blend_tiles.tile_windows((h, w), (th, tw), overlap)
  regions = (np.ones((1, h, w), np.float32) if masks is None else masks) * valid[None]
  spec = model.spec(layer)
  parts = []
  for window, share in windows:  # each position's shares over all tiles sum to 1: counted once
    tile_weights = masks_at(regions[:, window[0], window[1]] * share[None], s)
    parts.append(jax.device_get(_tile_sums_jit(model.enc_params, image[window][None], tile_weights, spec=spec)))
  stats = [ops.combine_moments([part[k] for part in parts]) for k in range(len(regions))]
  acc = np.zeros((h, w, 3), np.float32)
  for window, share in windows:
    tile_masks = None if masks is None else masks_at(masks[:, window[0], window[1]], s)
    out = _tile_level_jit(model.enc_params, model.decoders[layer].params, image[window][None],
                          [m.mean for m in stats], [m.cov for m in stats], [t[layer].mean for t in transforms],
                          [t[layer].coloring for t in transforms], style_weights, tile_masks, np.float32(alpha),
                          spec=spec, eps=eps)
    acc[window] += np.clip(np.asarray(out)[0], 0.0, 1.0) * share[..., None]
  return acc


def run_level(model: Model, layer: str, image: np.ndarray, masks: np.ndarray | None, transforms, style_weights,
              alpha: float, *, max_pixels: int = DEFAULT_MAX_PIXELS, tiling: blend_tiles.Tiling | None = None,
              eps: float = ops.EPS) -> np.ndarray:
  """One level of the cascade on an (H, W, 3) image: reflect-padded to a multiple of the level's stride (the
  padding left out of the statistics), whole or in tiles; the decoded image cropped back and clipped to [0, 1].

  Args:
    model: the encoder and decoders (`make_model`'s, or PhotoWCT's model, whose decoders unpool with the switches of
      the image or tile they decode).
    layer: the level.
    image: (H, W, 3) RGB in [0, 1].
    masks: (K, H, W) region masks, region k taking transform k, or None.
    transforms: one {level: `ops.StyleTransform`} per style (or per region with `masks`).
    style_weights: (K,) blend weights of the styles without masks, or None (equal).
    alpha: content/style blend of the features.
    max_pixels: larger (padded) images run in tiles (`tiling`, default `blend_tiles.tiling_for_budget`) whitened
      with the whole image's statistics.
    tiling: force tiles of this layout.
    eps: eigenvalue regularisation.
  """
  h, w = image.shape[:2]
  s = _stride(layer)
  ph, pw = (-h) % s, (-w) % s
  if ph >= h or pw >= w:
    raise NSTError(f"--content: an image of {w}x{h} px is too small for WCT at {layer} (at least {s} px a side)")
  pad = ((0, ph), (0, pw))
  valid = np.pad(np.ones((h, w), np.float32), pad)
  padded_masks = None if masks is None else np.stack([np.pad(np.asarray(m, np.float32), pad) for m in masks])
  padded = np.pad(image, pad + ((0, 0),), mode="reflect")
  if tiling is not None or padded.shape[0] * padded.shape[1] > max_pixels:
    out = _tiled_level(model, layer, padded, valid, padded_masks, transforms, style_weights, alpha,
                       tiling or blend_tiles.tiling_for_budget(max_pixels), eps)
  else:
    out = np.asarray(_level_jit(
        model.enc_params, model.decoders[layer].params, padded[None], masks_at(valid[None], s)[0],
        [t[layer].mean for t in transforms], [t[layer].coloring for t in transforms], style_weights,
        None if padded_masks is None else masks_at(padded_masks, s), np.float32(alpha), spec=model.spec(layer),
        eps=eps))[0]
  # The next level sees the decoded image in the image range, as a real image would be.
  return np.clip(out[:h, :w], 0.0, 1.0)


def masks_at(masks: np.ndarray, stride: int) -> np.ndarray:
  """(K, H, W) masks averaged over stride x stride blocks (H, W multiples of `stride`)."""
  k, h, w = masks.shape
  return masks.reshape(k, h // stride, stride, w // stride, stride).mean(axis=(2, 4))


def _alphas(alpha: float | Mapping[str, float], levels: Sequence[str]) -> dict[str, float]:
  values = dict(alpha) if isinstance(alpha, Mapping) else {layer: float(alpha) for layer in levels}
  for layer in levels:
    if layer not in values:
      raise NSTError(f"--alpha gives no value for level {layer}")
    if not 0.0 <= values[layer] <= 1.0:
      raise NSTError(f"--alpha must be in [0, 1], got {values[layer]} for {layer}")
  return values


def stylize(content: np.ndarray, styles: Sequence[np.ndarray], *, model: Model,
            alpha: float | Mapping[str, float] = 1.0, style_weights: Sequence[float] | None = None,
            masks: np.ndarray | None = None, preserve_colors: str = "none", levels: Sequence[str] | None = None,
            transforms: Sequence[Mapping[str, ops.StyleTransform]] | None = None,
            max_pixels: int = DEFAULT_MAX_PIXELS, tiling: blend_tiles.Tiling | None = None,
            scales: Mapping[str, float] | None = None, passes: Mapping[str, int] | None = None,
            eps: float = ops.EPS) -> np.ndarray:
  """The stylised (H, W, 3) float image in [0, 1] of `content` with `styles`, by the WCT cascade.

  Args:
    content: RGB [0, 1] (H, W, 3).
    styles: RGB [0, 1] style images (any sizes); [] when `transforms` are given.
    model: `make_model`'s.
    alpha: content/style blend of the features, one number or {level: number}.
    style_weights: blend weights of the styles (normalised); not with `masks`.
    masks: (K, H, W) one region mask per style in content space (each region takes its style's transform).
    preserve_colors: 'luminance' (the result's luma on the content's chroma, styles luma-matched first) or
      'histogram' (the styles recoloured to the content's colour distribution first), else 'none'.
    levels: the levels to run, any subset of the model's, run coarse to fine (default: the decoder file's
      recommended levels, else all).
    transforms: the styles' `style_transforms` (e.g. cached), instead of the style images.
    max_pixels: larger (padded) contents go through tiles (`tiling`, default `blend_tiles.tiling_for_budget`).
    tiling: force tiles of this layout.
    scales: {level: factor in (0, 1]}: run that level on the image resized by the factor (and the decoded image
      resized back), e.g. 0.5 for relu5_1 and relu4_1 to save three quarters of their cost; `transforms` must then
      have been made with the same `scales`.
    passes: {level: n}: run that level n times in a row (default 1). The decoders only approximate the inverse of
      the encoder, so one pass leaves the level's statistics short of the style's; each further pass, on the image
      the last one decoded, brings them closer, at the cost of more of the photo's structure.
    eps: eigenvalue regularisation of the whitening and colouring.

  Returns:
    (H, W, 3) float32 in [0, 1].
  """
  if levels is None:
    levels = model.default_levels or model.levels
  unknown = sorted(set(levels) - set(model.levels))
  if unknown:
    raise NSTError(f"--levels: no decoder for {unknown[0]} in this decoder file")
  levels = tuple(layer for layer in model.levels if layer in levels)
  if not levels:
    raise NSTError("--levels: none of the model's levels selected")
  if preserve_colors not in COLOR_MODES:
    raise NSTError(f"--preserve_colors must be one of {', '.join(COLOR_MODES)}, got {preserve_colors!r}")
  count = len(transforms) if transforms is not None else len(styles)
  if count == 0:
    raise NSTError("--style: at least one style image is needed")
  if transforms is not None and preserve_colors != "none":
    raise NSTError("cached style transforms cannot be recoloured (--preserve_colors)")
  if style_weights is not None:
    if masks is not None:
      raise NSTError("--style_blend and --style_masks cannot be combined: masks decide where each style goes")
    if len(style_weights) != count:
      raise NSTError(f"--style_blend needs one weight per style ({count}), got {len(style_weights)}")
    if not all(np.isfinite(w) and w >= 0 for w in style_weights) or sum(style_weights) <= 0:
      raise NSTError(f"--style_blend weights must be non-negative with a positive sum, got {list(style_weights)}")
  if masks is not None and (len(masks) != count or masks.shape[1:] != content.shape[:2]):
    raise NSTError(f"--style_masks needs one mask per style ({count}) of the content's size")
  alphas = _alphas(alpha, levels)
  scales = dict(scales or {})
  if not all(0.0 < f <= 1.0 for f in scales.values()):
    raise NSTError(f"level scales must lie in (0, 1], got {scales}")
  passes = dict(passes or {})
  if not all(isinstance(n, int) and 1 <= n <= 10 for n in passes.values()):
    raise NSTError(f"--passes must be whole numbers from 1 to 10, got {passes}")
  original = np.asarray(content, np.float32)
  image = original
  if transforms is None:
    image, styles = color.colors_kept_inputs(original, [np.asarray(s, np.float32) for s in styles], preserve_colors)
    transforms = [style_transforms(model, s, scales=scales, eps=eps) for s in styles]
  weights = None if style_weights is None else np.asarray(style_weights, np.float32)
  h, w = image.shape[:2]
  current = image
  for layer in [layer for layer in levels for _ in range(passes.get(layer, 1))]:
    scale = scales.get(layer, 1.0)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    src = current if scale == 1.0 else image_io.resize(current, *size)
    src_masks = None if masks is None or scale == 1.0 else np.stack([image_io.resize(
        np.asarray(m, np.float32)[..., None], *size)[..., 0] for m in masks])
    out = run_level(model, layer, src, masks if scale == 1.0 else src_masks, transforms, weights, alphas[layer],
                     max_pixels=max_pixels, tiling=tiling, eps=eps)
    current = out if scale == 1.0 else np.clip(image_io.resize(out, h, w), 0.0, 1.0)
  result = current
  if not np.all(np.isfinite(result)):
    raise NSTError("the WCT decoders produced non-finite values; the decoder file may be damaged")
  if preserve_colors == "luminance":
    result = np.clip(np.asarray(color.combine_luminance(stylized=result, content=original)), 0.0, 1.0)
  return result


def runs_whole(model: Model, shape: tuple[int, int]) -> bool:
  """Whether `stylize` runs an image of `shape` (H, W) whole at every level of the model (not in tiles)."""
  def fits(s: int) -> bool:
    ph, pw = (-shape[0]) % s, (-shape[1]) % s
    return ph < shape[0] and pw < shape[1] and (shape[0] + ph) * (shape[1] + pw) <= DEFAULT_MAX_PIXELS
  return all(fits(_stride(layer)) for layer in model.levels)


@functools.partial(jax.jit, static_argnames=("spec", "eps"))
def _level_batch_jit(enc_params, dec_params, images, valid, means, colorings, style_weights, alpha, *, spec, eps):
  """`_level_jit` of each image of a batch (N, H, W, 3), each whitened with its own statistics."""
  return jax.vmap(lambda image: _level_jit(enc_params, dec_params, image[None], valid, means, colorings, style_weights,
                                           None, alpha, spec=spec, eps=eps)[0])(images)


def stylize_batch(frames: np.ndarray, *, model: Model, transforms: Sequence[Mapping[str, ops.StyleTransform]],
                  alpha: float | Mapping[str, float] = 1.0, style_weights: Sequence[float] | None = None,
                  mesh: Mesh | None = None, eps: float = ops.EPS) -> np.ndarray:
  """`stylize(frame, [], transforms=...)` of every frame [N, H, W, 3] of one size (the model's default levels, run
  whole), each level one call on all frames sharded over the devices of `mesh` (default: every device on one axis);
  statistics stay per frame. N is padded to a multiple of the device count. Returns [N, H, W, 3] in [0, 1]."""
  frames = np.asarray(frames, np.float32)
  n, h, w = frames.shape[:3]
  levels = tuple(layer for layer in model.levels if layer in (model.default_levels or model.levels))
  alphas = _alphas(alpha, levels)
  mesh = mesh if mesh is not None else frame_batches.frames_mesh()
  weights = None if style_weights is None else np.asarray(style_weights, np.float32)
  current = frames
  if not runs_whole(model, (h, w)):
    raise NSTError(f"batched WCT frames must be under {DEFAULT_MAX_PIXELS} px, got {w}x{h}")
  for layer in levels:
    s = _stride(layer)
    pad = ((0, (-h) % s), (0, (-w) % s))
    padded = np.stack([np.pad(f, pad + ((0, 0),), mode="reflect") for f in current])
    out = _level_batch_jit(model.enc_params, model.decoders[layer].params, frame_batches.shard_frames(padded, mesh),
                           masks_at(np.pad(np.ones((1, h, w), np.float32), ((0, 0),) + pad), s)[0],
                           [t[layer].mean for t in transforms], [t[layer].coloring for t in transforms], weights,
                           np.float32(alphas[layer]), spec=model.spec(layer), eps=eps)
    current = np.clip(np.asarray(out)[:, :h, :w], 0.0, 1.0)
  if not np.all(np.isfinite(current)):
    raise NSTError("the WCT decoders produced non-finite values; the decoder file may be damaged")
  return current[:n]


def stylize_clip(frames: np.ndarray, *, model: Model, transforms: Sequence[Mapping[str, ops.StyleTransform]],
                 alpha: float | Mapping[str, float] = 1.0, style_weights: Sequence[float] | None = None,
                 levels: Sequence[str] | None = None, window: int = 0, eps: float = ops.EPS) -> np.ndarray:
  """The WCT cascade over a clip [T, H, W, 3] with clip-wide content statistics: at each level every frame is
  whitened with the moments of all frames (or of the `window` frames centred on it), so that the level's transform
  is one linear map for the clip and a frame's result changes only where its content does.

  The cascade runs level by level over the frames: each frame's features and moments (`ops.moment_sums`, combined
  in float64), one whitening matrix per window (one per level for the whole clip), then each frame whitened,
  coloured and decoded. With one frame, `stylize`'s result.

  Args:
    frames: [T, H, W, 3] RGB in [0, 1], each small enough to run whole (under `DEFAULT_MAX_PIXELS`).
    model, transforms, alpha, style_weights, levels, eps: as for `stylize`.
    window: frames whose moments whiten each frame (0: the whole clip).

  Returns:
    [T, H, W, 3] float32 in [0, 1].
  """
  current = video.checked_clip(frames, window)
  levels = tuple(layer for layer in model.levels if layer in (levels or model.default_levels or model.levels))
  alphas = _alphas(alpha, levels)
  weights = None if style_weights is None else np.asarray(style_weights, np.float32)
  count, h, w = current.shape[:3]
  if (h + 16) * (w + 16) > DEFAULT_MAX_PIXELS:
    raise NSTError(f"clip-wide statistics need frames under {DEFAULT_MAX_PIXELS} px, got {w}x{h}")
  for layer in levels:
    s = _stride(layer)
    ph, pw = (-h) % s, (-w) % s
    if ph >= h or pw >= w:
      raise NSTError(f"--content: an image of {w}x{h} px is too small for WCT at {layer} (at least {s} px a side)")
    pad = ((0, ph), (0, pw))
    valid = masks_at(np.pad(np.ones((h, w), np.float32), pad)[None], s)
    spec = model.spec(layer)
    feats, parts = zip(*(_features_jit(model.enc_params, np.pad(f, pad + ((0, 0),), mode="reflect")[None], valid[0],
                                       spec=spec) for f in current))
    parts = jax.device_get(parts)
    means, colorings = [t[layer].mean for t in transforms], [t[layer].coloring for t in transforms]
    whitenings: dict[tuple[int, int], tuple] = {}
    out = []
    for t, f in enumerate(feats):
      bounds = blend_tiles.window_bounds(t, count, window)
      if bounds not in whitenings:
        stats = ops.combine_moments(parts[bounds[0]:bounds[1]])
        whitenings[bounds] = (stats.mean, ops.whitening_matrix(stats.cov, eps=eps))
      decoded = _whitened_level_jit(model.decoders[layer].params, f, *whitenings[bounds], means, colorings, weights,
                                    np.float32(alphas[layer]), spec=spec)
      out.append(np.clip(np.asarray(decoded)[0, :h, :w], 0.0, 1.0))
    current = np.stack(out)
  if not np.all(np.isfinite(current)):
    raise NSTError("the WCT decoders produced non-finite values; the decoder file may be damaged")
  return current
