"""Arbitrary style transfer in real time with adaptive instance normalisation (Huang & Belongie 2017): inference.

An encoder maps an image to its relu4_1 features; AdaIN (`ops`) gives the content features the channel-wise mean and
standard deviation of the style's, and a decoder (`nst_jax.models.adain_decoder`) maps the result back to an image,
trained (`train`) so that the encoder of its output reproduces the AdaIN target at relu4_1 and the style's statistics
at relu1_1..relu4_1.

Two kinds of model, both one decoder file: the paper's (the hed-vgg16 encoder, a decoder from relu4_1 alone) and the
fast one that ships: a student encoder pruned from hed-vgg16 (`nst_jax.models.adain_student`) whose relu1_1..relu3_1
are AdaIN-normalised too and fed to the decoder as skips, with zero padding. The fast model pads images to a few
size buckets (reusing compiled executables; every activation outside the image is masked, so the result is exactly
the unpadded one) after a mirrored margin that keeps zero padding's frame out of the picture.

Controls (paper, section 7): the content-style trade-off alpha, interpolation between several styles with weights,
spatial control with masks, colour preservation (`nst_jax.losses.color`), and by default the styles' chroma statistics
on the output (YIQ, luma untouched; a grayscale style gives a gray image). Above a pixel budget the content is processed
in overlapping tiles blended with linear ramps, every tile normalised with the statistics of a thumbnail of the whole
image (Chen et al. 2022, URST). A style is needed only as its statistics (`style_statistics`), which callers may cache
(`cache`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from nst_jax.errors import NSTError
from nst_jax.io import image_io, video
from nst_jax.losses import color
from nst_jax.methods import blend_tiles, frame_batches
from nst_jax.methods.adain.ops import STYLE_LAYERS, adain_target, encode, feature_stats, pooled_stats
from nst_jax.methods.blend_tiles import Tiling, tile_starts, tiling_for_budget, window_bounds
from nst_jax.models import adain_student, vgg
from nst_jax.models.adain_decoder import ENCODER_LAYER, DecoderCheckpoint, decode
from nst_jax.models.preprocessing import Preprocessing
from nst_jax.weights.adain_decoders import check_encoder
from nst_jax.weights.format import VGGWeights

COLOR_MODES = color.COLOR_MODES
DEFAULT_MAX_PIXELS = 2048 * 1024  # larger contents go through tiles

# ----------------------------------------------------------------------------------------------------------------
# Inference


@dataclasses.dataclass(frozen=True)
class Model:
  """An encoder and a decoder that belong together (see `make_model`).

  Attributes:
    arch, preprocessing: the (teacher) VGG's architecture and input preprocessing.
    width: the decoder's width.
    enc_params, dec_params: the encoder's and the decoder's parameters.
    student_width: > 0 when `enc_params` are a student encoder's (`nst_jax.models.adain_student`), not the VGG's.
    encoder_id: names the encoder's parameters (weights sha256, or the student arrays' sha256) for caches.
    padding, input_scale: the decoder's.
    skip_width: > 0 when the decoder also takes AdaIN of relu3_1, relu2_1, relu1_1 (`adain_decoder.decoder_shapes`)."""

  arch: str
  width: int
  preprocessing: Preprocessing
  enc_params: Any
  dec_params: Any
  student_width: int = 0
  encoder_id: str = ""
  padding: str = "reflect"
  skip_width: int = 0
  input_scale: float = 1.0

  @property
  def spec(self) -> tuple:
    """The static (hashable) part that selects a compiled executable."""
    return (self.arch, self.width, self.preprocessing, self.student_width, self.padding, self.skip_width,
            self.input_scale)

  @property
  def layers(self) -> tuple[str, ...]:
    """The encoder layers that AdaIN normalises: relu4_1, and with skips relu1_1..relu3_1 too."""
    return STYLE_LAYERS if self.skip_width else (ENCODER_LAYER,)


def make_model(weights: VGGWeights | None, ckpt: DecoderCheckpoint) -> Model:
  """The model of a decoder file: its own student encoder when it has one, else the VGG encoder of `weights`.

  With a student, `weights` (if given) must be its teacher; the pairing is checked."""
  if weights is not None:
    check_encoder(ckpt, weights)
  if ckpt.student is not None:
    student = ckpt.student
    if student.preprocessing is None:
      raise NSTError("the decoder's student encoder records no input preprocessing")
    return Model(ckpt.arch, ckpt.width, student.preprocessing, jax.device_put(student.params),
                 jax.device_put(ckpt.params), student.width, "student-" + adain_student.params_sha256(student.params),
                 ckpt.padding, ckpt.skip_width, ckpt.input_scale)
  if weights is None:
    raise NSTError("this decoder needs the VGG encoder it was trained with (--weights)")
  enc = jax.device_put(vgg.params_for(weights.arch, weights.params, STYLE_LAYERS))
  return Model(weights.arch, ckpt.width, weights.preprocessing, enc, jax.device_put(ckpt.params), 0,
               weights.source_sha256, ckpt.padding, ckpt.skip_width, ckpt.input_scale)


LayerStats = dict  # {layer: Stats}: a style's (or region's) statistics at every layer AdaIN normalises


def _layers(spec: tuple) -> tuple[str, ...]:
  return STYLE_LAYERS if spec[5] else (ENCODER_LAYER,)


def _encode_layers(enc_params, images: jax.Array, spec: tuple, valid: jax.Array | None = None) -> dict:
  arch, _, preprocessing, student_width = spec[:4]
  if student_width:
    return adain_student.encode(enc_params, images, preprocessing=preprocessing, layers=_layers(spec), valid=valid)
  return encode(enc_params, images, arch=arch, preprocessing=preprocessing, layers=_layers(spec))


def _valid_at(valid: jax.Array | None, layer: str) -> jax.Array | None:
  """The validity mask at a layer's resolution (relu_b_1 is 2^(b-1) times smaller than the image)."""
  step = 2 ** (int(layer[4]) - 1)
  return None if valid is None else valid[:, ::step, ::step]


def _targets(feats: dict, style_stats, style_weights, masks, content_stats, alpha) -> dict:
  """{layer: AdaIN target}; `masks` and `content_stats` are {layer: ...} or None, `style_stats` [LayerStats]."""
  return {layer: adain_target(f, style_stats=[s[layer] for s in style_stats], style_weights=style_weights,
                              masks=None if masks is None else masks[layer],
                              content_stats=None if content_stats is None else content_stats[layer], alpha=alpha)
          for layer, f in feats.items()}


def _decode_targets(dec_params, targets: dict, spec: tuple, valid: jax.Array | None = None) -> jax.Array:
  skips = {k: v for k, v in targets.items() if k != ENCODER_LAYER} if spec[5] else None
  return decode(dec_params, targets[ENCODER_LAYER], arch=spec[0], width=spec[1], padding=spec[4],
                valid=_valid_at(valid, ENCODER_LAYER), skips=skips, skip_width=spec[5], input_scale=spec[6])


COLORS = "yiq"  # the style_statistics entry of the style's YIQ pixel statistics


def _match_colors(out: jax.Array, style_stats, style_weights, alpha, *, valid=None, out_stats=None) -> jax.Array:
  """The output with its YIQ chroma (I, Q) standardised and given the styles' (weighted) chroma means and stds,
  its luma Y untouched; blended with the uncorrected output by alpha. AdaIN of the pixels' chroma: a grayscale
  style (chroma std 0) gives a gray image. `out_stats` (of a thumbnail's output) replace the output's own."""
  weights = style_weights / jnp.sum(style_weights)
  s_mean = sum(weights[k] * s[COLORS][0] for k, s in enumerate(style_stats))
  s_std = sum(weights[k] * s[COLORS][1] for k, s in enumerate(style_stats))
  mean, std = out_stats if out_stats is not None else feature_stats(color.rgb_to_yiq(out), mask=valid)
  corrected = color.with_chroma_statistics(out, own_mean=mean[..., 1:], own_std=std[..., 1:], mean=s_mean[..., 1:],
                                           std=s_std[..., 1:])
  return alpha * corrected + (1.0 - alpha) * out


@functools.partial(jax.jit, static_argnames=("spec",))
def _encode_jit(enc_params, images, valid, *, spec):
  return _encode_layers(enc_params, images, spec, valid)


@functools.partial(jax.jit, static_argnames=("spec",))
def _stats_jit(enc_params, images, valid, *, spec):
  feats = _encode_layers(enc_params, images, spec, valid)
  stats = {layer: feature_stats(f, mask=_valid_at(valid, layer)) for layer, f in feats.items()}
  stats[COLORS] = feature_stats(color.rgb_to_yiq(images), mask=valid)
  return stats


@functools.partial(jax.jit, static_argnames=("spec", "colors"))
def _decode_jit(dec_params, feats, style_stats, style_weights, masks, content_stats, alpha, out_stats, *, spec,
                colors):
  out = _decode_targets(dec_params, _targets(feats, style_stats, style_weights, masks, content_stats, alpha), spec)
  return _match_colors(out, style_stats, style_weights, alpha, out_stats=out_stats) if colors else out


@functools.partial(jax.jit, static_argnames=("spec", "colors"))
def _stylize_jit(enc_params, dec_params, image, valid, style_stats, style_weights, masks, alpha, *, spec, colors):
  """One compiled pass for a whole image: encoder, content statistics (of the valid region), AdaIN, decoder."""
  feats = _encode_layers(enc_params, image, spec, valid)
  content_stats = {}
  for layer, f in feats.items():
    v = _valid_at(valid, layer)
    regions = [v] if masks is None else [m[None, :, :, None] * (1.0 if v is None else v) for m in masks[layer]]
    content_stats[layer] = [feature_stats(f, mask=r) for r in regions]
  targets = _targets(feats, style_stats, style_weights, masks, content_stats, alpha)
  out = _decode_targets(dec_params, targets, spec, valid)
  return _match_colors(out, style_stats, style_weights, alpha, valid=valid) if colors else out


# Images are padded up to a few sizes per side, so that other sizes reuse a compiled executable: multiples of 64 up
# to 1280, of 128 up to 2048 and of 256 beyond (at most ~12% padding per side above 512 px).
_BUCKET_STEPS = ((1280, 64), (2048, 128))
# A zero-padded decoder (and the encoder's own zero padding) leave a thin frame at the image border: bucketed models
# stylise the content reflect-padded by this margin on every side and crop it off again.
MARGIN = 16


def bucket_side(n: int) -> int:
  """The padded length of an image side of n pixels."""
  for limit, step in _BUCKET_STEPS:
    if n <= limit:
      return max(step, -(-n // step) * step)
  return -(-n // 256) * 256


def add_margin(image: np.ndarray, margin: int) -> np.ndarray:
  """(H, W, C) to (H + 2 margin, W + 2 margin, C), mirrored at the borders (repeated edge for tiny images)."""
  if not margin:
    return image
  mode = "symmetric" if min(image.shape[:2]) >= margin else "edge"
  return np.pad(image, ((margin, margin), (margin, margin), (0, 0)), mode=mode)


def bucketed(model: Model) -> bool:
  """Whether `model` pads images to size buckets: exactly for a student encoder with a zero-padded decoder.

  They zero every activation outside the image (`valid`), so the result is that of the unpadded image. Other models
  run each size as it is (compiling per size), since reflection padding cannot be masked that way."""
  return model.student_width > 0 and model.padding == "zero"


def pad_input(image: np.ndarray, *, bucket: bool) -> tuple[np.ndarray, np.ndarray | None]:
  """(padded image, valid) of an (H, W, 3) image.

  The image is reflect-padded to multiples of 8 (bottom, right), then with `bucket` placed in the top-left of a zero
  image of its bucket size, `valid` (1, H, W, 1) marking the multiple-of-8 part (None without `bucket`)."""
  image = pad_to_multiple(np.asarray(image, np.float32))
  if not bucket:
    return image, None
  h, w = image.shape[:2]
  padded = np.zeros((bucket_side(h), bucket_side(w)) + image.shape[2:], np.float32)
  padded[:h, :w] = image
  valid = np.zeros((1,) + padded.shape[:2] + (1,), np.float32)
  valid[:, :h, :w] = 1.0
  return padded, valid


def pad_to_multiple(image: np.ndarray, multiple: int = 8) -> np.ndarray:
  """`image` padded at the bottom and right to sides that are multiples of `multiple`.

  Reflected, or repeated where the image is too small to reflect."""
  h, w = image.shape[:2]
  ph, pw = (-h) % multiple, (-w) % multiple
  if ph == 0 and pw == 0:
    return image
  mode = "reflect" if ph < h and pw < w else "edge"
  return np.pad(image, ((0, ph), (0, pw), (0, 0)), mode=mode)


def features(model: Model, image: np.ndarray, valid: np.ndarray | None = None) -> dict:
  """{layer: features} of one (H, W, 3) image by the model's encoder, at the layers the model normalises."""
  return _encode_jit(model.enc_params, np.asarray(image, np.float32)[None], valid, spec=model.spec)


def _masks_at_layers(masks: np.ndarray, shape: tuple[int, int], layers: Sequence[str]) -> dict:
  """{layer: `masks_at`} for (K, H, W) masks of an (H, W) image whose sides are multiples of 8."""
  return {layer: masks_at(masks, (shape[0] >> (int(layer[4]) - 1), shape[1] >> (int(layer[4]) - 1)))
          for layer in layers}


def style_statistics(model: Model, style: np.ndarray) -> LayerStats:
  """{layer: channel (mean, std), each (1, 1, 1, C)} of a style image's encoder features at `model.layers`.

  What `stylize` needs of a style, and all that a cache must keep of it."""
  padded, valid = pad_input(style, bucket=bucketed(model))
  return _stats_jit(model.enc_params, padded[None], valid, spec=model.spec)


def masks_at(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  """(K, H, W) masks area-averaged to `shape`, (K, h, w), normalised to sum 1 at every position.

  An uncovered position is shared equally."""
  small = np.stack([image_io.resize(m[..., None].astype(np.float32), *shape)[..., 0] for m in masks])
  small = np.clip(small, 0.0, None)
  total = small.sum(axis=0, keepdims=True)
  return np.where(total > 1e-6, small / np.maximum(total, 1e-6), 1.0 / len(masks)).astype(np.float32)


def stylize(content: np.ndarray, styles: Sequence[np.ndarray], *, model: Model, alpha: float = 1.0,
            style_weights: Sequence[float] | None = None, masks: np.ndarray | None = None,
            preserve_colors: str = "none", max_pixels: int = DEFAULT_MAX_PIXELS,
            tiling: Tiling | None = None, style_stats: Sequence[LayerStats] | None = None,
            style_colors: bool = True) -> np.ndarray:
  """The stylised (H, W, 3) float image in [0, 1] of `content` with `styles`, in one decoder pass.

  Whole images are padded to a size bucket (`bucket_side`) and normalised with the statistics of their unpadded part,
  so sizes in one bucket share one compilation.

  Args:
    content: (H, W, 3) RGB in [0, 1].
    styles: RGB [0, 1] style images (any sizes); [] when `style_stats` are given.
    model: `make_model`'s.
    alpha: content-style trade-off of the AdaIN target.
    style_weights: interpolation weights of the styles (normalised); not with `masks`.
    masks: (K, H, W) in content space, one region per style (spatial control).
    preserve_colors: 'luminance' or 'histogram' (`nst_jax.losses.color.colors_kept_inputs`), else 'none'.
    max_pixels: larger contents go through tiles normalised with the statistics of a thumbnail of the whole
      content (URST).
    tiling: force tiles of this layout.
    style_stats: `style_statistics` of each style (e.g. from a cache) instead of `styles`; not with
      `preserve_colors`, which recolours the style images.
    style_colors: give the output the styles' chroma statistics (luma untouched; a grayscale style gives a gray
      image); not with `preserve_colors` or `masks`.
  """
  if style_stats is not None:
    if styles or preserve_colors != "none":
      raise NSTError("style statistics replace the style images, and cannot be recoloured (--preserve_colors)")
    styles = [None] * len(style_stats)
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
  if style_stats is None:
    content, styles = color.colors_kept_inputs(original, [np.asarray(s, np.float32) for s in styles],
                                               preserve_colors)
  if style_stats is None:
    style_stats = [style_statistics(model, s) for s in styles]
  # Host arrays go into the jitted functions as they are: jnp.asarray would compile a small executable per
  # shape (and embed small constants), which a second run could not take from the persistent cache.
  weights = np.asarray(style_weights if style_weights is not None else [1.0] * len(styles), np.float32)
  h, w = content.shape[:2]
  colors = style_colors and preserve_colors == "none" and masks is None
  margin = MARGIN if bucketed(model) else 0
  content = add_margin(content, margin)
  if masks is not None:
    masks = add_margin(np.moveaxis(masks, 0, -1), margin).transpose(2, 0, 1)
  if tiling is None and runs_whole((h, w), max_pixels):
    out = _stylize_whole(content, model=model, style_stats=style_stats, weights=weights, masks=masks, alpha=alpha,
                         colors=colors)
  else:
    out = _stylize_tiled(content, model=model, style_stats=style_stats, weights=weights, masks=masks, alpha=alpha,
                         tiling=tiling or tiling_for_budget(max_pixels), colors=colors)
  out = out[margin:margin + h, margin:margin + w]
  if not np.all(np.isfinite(out)):
    raise NSTError("the decoder produced non-finite values; the decoder file may be damaged")
  out = np.clip(out, 0.0, 1.0)
  if preserve_colors == "luminance":
    out = np.asarray(color.combine_luminance(stylized=out, content=original))
  return out


def runs_whole(shape: tuple[int, int], max_pixels: int = DEFAULT_MAX_PIXELS) -> bool:
  """Whether `stylize` runs an image of `shape` (H, W) in one pass rather than in tiles."""
  return shape[0] * shape[1] <= max_pixels


def stylize_batch(frames: np.ndarray, *, model: Model, style_stats: Sequence[LayerStats], alpha: float = 1.0,
                  style_weights: Sequence[float] | None = None, mesh: Mesh | None = None) -> np.ndarray:
  """`stylize(frame, [], style_stats=...)` of every frame [N, H, W, 3] of one size in one call of the compiled pass,
  the frames sharded over the devices of `mesh` (default: every device on one axis); statistics stay per frame.
  N is padded to a multiple of the device count by repeating the last frame. Frames must run whole
  (`DEFAULT_MAX_PIXELS`). Returns [N, H, W, 3] float32 in [0, 1]."""
  frames = np.asarray(frames, np.float32)
  if not 0.0 <= alpha <= 1.0:
    raise NSTError(f"--alpha must be in [0, 1], got {alpha}")
  n, h, w = frames.shape[:3]
  if not runs_whole((h, w)):
    raise NSTError(f"batched frames must be under {DEFAULT_MAX_PIXELS} px, got {w}x{h}")
  margin = MARGIN if bucketed(model) else 0
  padded = [pad_input(add_margin(f, margin), bucket=bucketed(model)) for f in frames]
  batch = frame_batches.shard_frames(np.stack([image for image, _ in padded]),
                                     mesh if mesh is not None else frame_batches.frames_mesh())
  weights = np.asarray(style_weights if style_weights is not None else [1.0] * len(style_stats), np.float32)
  out = np.asarray(_stylize_jit(model.enc_params, model.dec_params, batch, padded[0][1], style_stats, weights, None,
                                np.float32(alpha), spec=model.spec, colors=True))
  out = out[:n, margin:margin + h, margin:margin + w]
  if not np.all(np.isfinite(out)):
    raise NSTError("the decoder produced non-finite values; the decoder file may be damaged")
  return np.clip(out, 0.0, 1.0)


def _stylize_whole(content, *, model, style_stats, weights, masks, alpha, colors) -> np.ndarray:
  h, w = content.shape[:2]
  padded, valid = pad_input(content, bucket=bucketed(model))
  small = None
  if masks is not None:
    padded_masks = pad_input(np.moveaxis(masks, 0, -1), bucket=bucketed(model))[0].transpose(2, 0, 1)
    small = _masks_at_layers(padded_masks, padded.shape[:2], model.layers)
  out = _stylize_jit(model.enc_params, model.dec_params, padded[None], valid, style_stats, weights, small,
                     np.float32(alpha), spec=model.spec, colors=colors)
  return np.asarray(out)[0, :h, :w]


def _stylize_tiled(content, *, model, style_stats, weights, masks, alpha, tiling: Tiling, colors) -> np.ndarray:
  h, w = content.shape[:2]
  thumb_shape = image_io.long_side_shape(content.shape, min(tiling.thumbnail, max(h, w)))
  thumb, valid = pad_input(image_io.resize(content, *thumb_shape), bucket=bucketed(model))
  feats = features(model, thumb, valid)
  small = None
  if masks is not None:
    thumb_masks = pad_input(image_io.resize(np.moveaxis(masks, 0, -1), *thumb_shape), bucket=bucketed(model))[0]
    small = _masks_at_layers(thumb_masks.transpose(2, 0, 1), thumb.shape[:2], model.layers)
  content_stats = {}
  for layer, f in feats.items():
    v = np.ones((1,) + f.shape[1:3] + (1,), np.float32) if valid is None else _valid_at(valid, layer)
    content_stats[layer] = [feature_stats(f, mask=v * (1.0 if small is None else m[None, :, :, None]))
                            for m in ([None] if small is None else small[layer])]
  out_stats = None
  if colors:  # the thumbnail's output chroma statistics stand in for the whole image's in every tile
    thumb_out = _stylize_jit(model.enc_params, model.dec_params, thumb[None], valid, style_stats, weights, None,
                             np.float32(alpha), spec=model.spec, colors=False)
    out_stats = feature_stats(color.rgb_to_yiq(thumb_out), mask=valid)
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
      feats = features(model, tile)
      small = None
      if masks is not None:
        tile_masks = np.stack([np.pad(m, ((0, ph - h), (0, pw - w)), mode="edge")[y:y + th, x:x + tw]
                               for m in masks])
        small = _masks_at_layers(tile_masks, tile.shape[:2], model.layers)
      out = np.asarray(_decode_jit(model.dec_params, feats, style_stats, weights, small, content_stats,
                                   np.float32(alpha), out_stats, spec=model.spec, colors=colors))[0]
      ramp = (blend_tiles.ramp(th, tiling.overlap, i == 0, i == len(ys) - 1)[:, None]
              * blend_tiles.ramp(tw, tiling.overlap, j == 0, j == len(xs) - 1)[None, :])[..., None]
      acc[y:y + th, x:x + tw] += out * ramp
      norm[y:y + th, x:x + tw] += ramp
  return (acc / np.maximum(norm, 1e-8))[:h, :w]


def stylize_clip(frames: np.ndarray, *, model: Model, style_stats: Sequence[LayerStats], alpha: float = 1.0,
                 style_weights: Sequence[float] | None = None, window: int = 0,
                 style_colors: bool = True) -> np.ndarray:
  """AdaIN over a clip [T, H, W, 3] with clip-wide content statistics: every frame's features are normalised with
  the channel means and stds of all frames (or of the `window` frames centred on it), and the output's chroma
  matched with the statistics of all outputs, so a frame's result changes only where its content does.

  Args:
    frames: [T, H, W, 3] RGB in [0, 1], each small enough to run whole (under `DEFAULT_MAX_PIXELS`).
    model, style_stats, alpha, style_weights, style_colors: as for `stylize`.
    window: frames whose statistics normalise each frame (0: the whole clip).

  Returns:
    [T, H, W, 3] float32 in [0, 1].
  """
  frames = video.checked_clip(frames, window)
  if not 0.0 <= alpha <= 1.0:
    raise NSTError(f"--alpha must be in [0, 1], got {alpha}")
  count, h, w = frames.shape[:3]
  margin = MARGIN if bucketed(model) else 0
  if (h + 2 * margin + 8) * (w + 2 * margin + 8) > DEFAULT_MAX_PIXELS:
    raise NSTError(f"clip-wide statistics need frames under {DEFAULT_MAX_PIXELS} px, got {w}x{h}")
  weights = np.asarray(style_weights if style_weights is not None else [1.0] * len(style_stats), np.float32)
  feats, stats = [], []
  for frame in frames:  # every frame has the same padding and `valid`
    padded, valid = pad_input(add_margin(frame, margin), bucket=bucketed(model))
    f = features(model, padded, valid)
    feats.append(f)
    stats.append({layer: feature_stats(x, mask=_valid_at(valid, layer)) for layer, x in f.items()})
  outs = []
  for t in range(count):
    start, stop = window_bounds(t, count, window)
    content_stats = {layer: [pooled_stats([s[layer] for s in stats[start:stop]])] for layer in stats[0]}
    out = _decode_jit(model.dec_params, feats[t], style_stats, weights, None, content_stats, np.float32(alpha),
                      None, spec=model.spec, colors=False)
    outs.append(np.asarray(out))
  if style_colors:
    own = [feature_stats(color.rgb_to_yiq(o), mask=valid) for o in outs]
    for t in range(count):
      start, stop = window_bounds(t, count, window)
      outs[t] = np.asarray(_match_colors(outs[t], style_stats, weights, np.float32(alpha),
                                         out_stats=pooled_stats(own[start:stop])))
  result = np.stack([o[0, margin:margin + h, margin:margin + w] for o in outs])
  if not np.all(np.isfinite(result)):
    raise NSTError("the decoder produced non-finite values; the decoder file may be damaged")
  return np.clip(result, 0.0, 1.0)

