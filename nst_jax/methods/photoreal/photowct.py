"""The fast photorealistic method (Li et al. 2018, "A Closed-form Solution to Photorealistic Image Stylization"):
the PhotoWCT cascade, then the closed-form smoothing.

PhotoWCT is WCT (`nst_jax.methods.wct.ops`) whose decoders invert max pooling with the encoder's pooling switches
(`nst_jax.models.wct_decoder`, upsampling 'unpool'): each level relu4_1, relu3_1, relu2_1, relu1_1 in turn encodes
the current image, whitens and colours its features, and decodes them putting every value back where the encoder's
pooling found it, so the content's edges stay in place where nearest upsampling would blur them. With segmentation
maps each content region is whitened with its own statistics and coloured with the matching style region's
(Luan et al.'s map format, `nst_jax.losses.segmentation.match`). The decoded image keeps small structure artefacts;
the smoothing step (`closed_form`) makes pixels that the content's matting affinity ties
together take similar colours, which removes them.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Mapping, Sequence

import jax
import numpy as np

from nst_jax.errors import NSTError
from nst_jax.io import image_io
from nst_jax.losses import color, segmentation
from nst_jax.methods.photoreal import closed_form, smoothing
from nst_jax.methods.wct import ops
from nst_jax.methods.wct import stylize as wct_stylize
from nst_jax.models import vgg, wct_decoder
from nst_jax.models.preprocessing import Preprocessing
from nst_jax.weights.format import VGGWeights

LEVELS = ("relu4_1", "relu3_1", "relu2_1", "relu1_1")  # the paper's cascade, coarse to fine
# What runs by default: the decoders of relu4_1 and relu3_1 do not yet reconstruct well enough (held-out PSNR 13.7 and
# 18.5 dB against relu2_1's 21.8 and relu1_1's 36.2), and on the paper's pairs they paint cloud-like blotches into
# flat areas; relu2_1 -> relu1_1 keeps the photograph (docs/photoreal.md, "The fast method").
DEFAULT_LEVELS = ("relu2_1", "relu1_1")
# λ of the smoothing after PhotoWCT. The paper's 1e-4 flattens the texture that the transfer gives (the segmented
# style loss 4-6x the unsmoothed one on pairs 3 and 7); at 1e-2 five of the paper's 12 pairs keep more small-scale
# structure than the paper's results (matting energy 1.04-1.9x theirs); 3e-3 brings all five to 0.36-0.81x
# (docs/photoreal.md, "The fast method").
DEFAULT_LAMBDA = 3e-3


@dataclasses.dataclass(frozen=True)
class Model(wct_stylize.Model):
  """The encoder and the unpooling decoders of the levels, ready to run (`make_model`)."""

  @property
  def levels(self) -> tuple[str, ...]:
    """The cascade's levels this model has decoders for, coarse to fine."""
    return tuple(layer for layer in LEVELS if layer in self.decoders)

  def spec(self, layer: str) -> tuple:
    """The static (hashable) part of a level that selects its compiled executable."""
    return (*super().spec(layer), self.decoders[layer].upsampling)


def make_model(weights: VGGWeights, decoders: wct_decoder.DecoderSet) -> Model:
  """The model of a PhotoWCT decoder file and the encoder it was trained with (NSTError for any other pair, or for
  a file without unpooling decoders at relu1_1 ... relu4_1)."""
  wct_stylize.check_encoder(weights, decoders)
  levels = {k: v for k, v in decoders.levels.items() if k in LEVELS and v.upsampling == "unpool"}
  if not levels:
    raise NSTError("--decoders has no unpooling (PhotoWCT) decoder at relu1_1 ... relu4_1; train them with "
                   "`nst-jax train wct --upsampling unpool`")
  levels = {k: dataclasses.replace(v, params=jax.device_put(v.params)) for k, v in levels.items()}
  enc = jax.device_put(vgg.params_for(weights.arch, weights.params, (vgg.deepest_layer(weights.arch, tuple(levels)),)))
  return Model(weights.arch, weights.preprocessing, enc, levels, weights.source_sha256)


def check_levels(model: Model, levels: Sequence[str] | None) -> tuple[str, ...]:
  """`levels` (default: `DEFAULT_LEVELS` the model has, else all of its) in the cascade's order; NSTError for a level
  without a decoder."""
  if levels is None:
    return tuple(layer for layer in model.levels if layer in DEFAULT_LEVELS) or model.levels
  missing = [layer for layer in levels if layer not in model.levels]
  if missing or not levels:
    raise NSTError(f"--levels: no PhotoWCT decoder for {', '.join(missing) or 'an empty list'} (the file has "
                   f"{', '.join(model.levels)})")
  return tuple(layer for layer in model.levels if layer in levels)


def _encode(enc_params, image: jax.Array, *, arch: str, preprocessing: Preprocessing, layer: str):
  sub = vgg.params_for(arch, dict(enc_params), (layer,))
  return vgg.features_and_switches({"params": sub}, preprocessing.apply(image), arch=arch, layer=layer)


@functools.partial(jax.jit, static_argnames=("arch", "preprocessing", "layer", "eps"))
def _region_transforms_jit(enc_params, style, region_weights, *, arch, preprocessing, layer, eps):
  """One `ops.StyleTransform` per (H/s, W/s) region weight map of a (1, H, W, 3) style image at `layer`."""
  feats, _ = _encode(enc_params, style, arch=arch, preprocessing=preprocessing, layer=layer)
  out = []
  for w in region_weights:
    m = ops.moments(feats[0], weights=w)
    out.append(ops.StyleTransform(m.mean, ops.coloring_matrix(m.cov, eps=eps)))
  return out


def region_transforms(model: Model, style: np.ndarray, style_masks: np.ndarray, *,
                      levels: Sequence[str] | None = None,
                      eps: float = ops.EPS) -> dict[str, list[ops.StyleTransform]]:
  """{level: one style transform per region} of an (H, W, 3) style image and its (K, H, W) region masks, at
  `levels` (default: every level of the model).

  The style is cropped to a multiple of the deepest level's stride (a crop of at most 7 px loses no region)."""
  levels = model.levels if levels is None else check_levels(model, levels)
  s = vgg.layer_stride(model.arch, levels[0])
  h, w = style.shape[0] // s * s, style.shape[1] // s * s
  if h == 0 or w == 0:
    raise NSTError(f"--style: an image of {style.shape[1]}x{style.shape[0]} px is too small for PhotoWCT (at "
                   f"least {s} px a side)")
  image = np.asarray(style, np.float32)[None, :h, :w]
  masks = np.asarray(style_masks, np.float32)[:, :h, :w]
  out = {}
  for layer in levels:
    weights = wct_stylize.masks_at(masks, vgg.layer_stride(model.arch, layer))
    out[layer] = _region_transforms_jit(model.enc_params, image, list(weights), arch=model.arch,
                                        preprocessing=model.preprocessing, layer=layer, eps=eps)
  return out


@functools.partial(jax.jit, static_argnames=("spec", "eps"))
def _level_jit(enc_params, dec_params, image, valid, means, colorings, masks, alpha, *, spec, eps):
  """One level on a (1, H, W, 3) image: encode with switches, per-region WCT, decode with the switches."""
  arch, preprocessing, layer, width, padding, input_scale, upsampling = spec
  feats, switches = _encode(enc_params, image, arch=arch, preprocessing=preprocessing, layer=layer)
  styles = [ops.StyleTransform(m, c) for m, c in zip(means, colorings)]
  target = ops.transform(feats[0], styles, alpha=alpha, masks=masks, weights=valid, eps=eps)
  level = wct_decoder.LevelDecoder(dec_params, width, padding, input_scale, upsampling=upsampling)
  return wct_decoder.decode(level, target[None], arch=arch, layer=layer, switches=switches)


def transfer(content: np.ndarray, *, model: Model, transforms: Mapping[str, Sequence[ops.StyleTransform]],
             content_masks: np.ndarray, alpha: float = 1.0, levels: Sequence[str] | None = None,
             eps: float = ops.EPS) -> np.ndarray:
  """The PhotoWCT cascade on an (H, W, 3) content with per-region style transforms (`region_transforms`).

  Args:
    content: RGB [0, 1].
    model: `make_model`'s.
    transforms: {level: [region k's transform]}.
    content_masks: (K, H, W) region masks of the content (summing to 1 at each pixel).
    alpha: content/style blend of the features at every level.
    levels: the levels to run, coarse to fine (default: `check_levels`').
    eps: eigenvalue regularisation of the whitening and colouring.

  Returns:
    (H, W, 3) float32 in [0, 1].
  """
  levels = check_levels(model, levels)
  h, w = content.shape[:2]
  s = vgg.layer_stride(model.arch, levels[0])
  ph, pw = (-h) % s, (-w) % s
  if ph >= h or pw >= w:
    raise NSTError(f"--content: an image of {w}x{h} px is too small for PhotoWCT (at least {s} px a side)")
  pad = ((0, ph), (0, pw))
  valid = np.pad(np.ones((h, w), np.float32), pad)
  masks = np.stack([np.pad(np.asarray(m, np.float32), pad) for m in content_masks])
  current = np.asarray(content, np.float32)
  for layer in levels:
    stride = vgg.layer_stride(model.arch, layer)
    padded = np.pad(current, pad + ((0, 0),), mode="reflect")
    out = _level_jit(model.enc_params, model.decoders[layer].params, padded[None],
                     wct_stylize.masks_at(valid[None], stride)[0], [t.mean for t in transforms[layer]],
                     [t.coloring for t in transforms[layer]], wct_stylize.masks_at(masks, stride),
                     np.float32(alpha), spec=model.spec(layer), eps=eps)
    current = np.clip(np.asarray(out)[0, :h, :w], 0.0, 1.0)
  if not np.all(np.isfinite(current)):
    raise NSTError("the PhotoWCT decoders produced non-finite values; the decoder file may be damaged")
  return current


@dataclasses.dataclass(frozen=True)
class Result:
  """A PhotoWCT run: the final image, the transform's image before smoothing, and timings.

  Attributes:
    image: (H, W, 3) float32 in [0, 1].
    transferred: the cascade's image (after the region chroma step), before smoothing.
    seconds: {'transfer', 'smoothing', 'polish'}: wall seconds of each step.
    smoothing_iterations: conjugate-gradient iterations (0 without smoothing).
  """

  image: np.ndarray
  transferred: np.ndarray
  seconds: dict
  smoothing_iterations: int


def stylize(content: np.ndarray, style: np.ndarray, *, model: Model, content_seg: np.ndarray | None = None,
            style_seg: np.ndarray | None = None, alpha: float = 1.0, levels: Sequence[str] | None = None,
            smooth: bool = True,
            lam: float = DEFAULT_LAMBDA, matting_eps: float = closed_form.EPSILON, polish: bool = False,
            polish_radius: int = 2, polish_eps: float = 1e-4, region_chroma: bool = True,
            eps: float = ops.EPS) -> Result:
  """Photorealistic stylisation of `content` with the photo `style`: PhotoWCT, closed-form smoothing, and
  optionally a guided-filter polish (content as guide).

  Args:
    content: the photo, RGB [0, 1] (H, W, 3), at the working size.
    style: the reference photo, RGB [0, 1], any size.
    model: `make_model`'s.
    content_seg, style_seg: colour-coded segmentation maps (any sizes; both or neither).
    alpha: content/style blend of the features at every level.
    levels: the levels to run, coarse to fine (default: `check_levels`').
    smooth: run the closed-form smoothing.
    lam: its λ (smaller: smoother).
    matting_eps: ε of its matting affinity.
    polish: a guided filter of the result with the content as guide (radius `polish_radius`, `polish_eps`).
    region_chroma: before smoothing, give each region the YIQ chroma mean and std of its style region
      (`color.match_region_chroma`): a gray target region gives a gray result, where the decoders alone leave a
      faint tint.
    eps: eigenvalue regularisation of the whitening and colouring.

  Returns:
    The `Result`.
  """
  content = np.asarray(content, np.float32)
  style = np.asarray(style, np.float32)
  seg = segmentation.match(content_seg, style_seg, content_shape=content.shape[:2], style_shape=style.shape[:2])
  if not 0.0 <= alpha <= 1.0:
    raise NSTError(f"--alpha must be in [0, 1], got {alpha}")
  start = time.perf_counter()
  levels = check_levels(model, levels)
  transforms = region_transforms(model, style, seg.style, levels=levels, eps=eps)
  transferred = transfer(content, model=model, transforms=transforms, content_masks=seg.content, alpha=alpha,
                         levels=levels, eps=eps)
  if region_chroma:
    transferred = np.clip(color.match_region_chroma(transferred, style, content_masks=seg.content,
                                                    style_masks=seg.style), 0.0, 1.0)
  seconds = {"transfer": time.perf_counter() - start}
  image, iterations = transferred, 0
  if smooth:
    start = time.perf_counter()
    solved = closed_form.smooth(stylized=transferred, content=content, lam=lam, eps=matting_eps)
    image, iterations = solved.image, solved.iterations
    seconds["smoothing"] = time.perf_counter() - start
  if polish:
    start = time.perf_counter()
    image = smoothing.guided_filter(guide=content, source=image, radius=polish_radius, eps=polish_eps)
    seconds["polish"] = time.perf_counter() - start
  return Result(np.clip(image, 0.0, 1.0).astype(np.float32), transferred, seconds, iterations)


def stylize_at_size(content: np.ndarray, style: np.ndarray, *, size: int, **kwargs) -> Result:
  """`stylize` with the content resized to a long side of `size` px and the style to the same long side."""
  content = image_io.resize_long_side(np.asarray(content, np.float32), size)
  style = image_io.resize_long_side(np.asarray(style, np.float32), size)
  return stylize(content, style, **kwargs)
