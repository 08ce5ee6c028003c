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
from nst_jax.losses import color, matting, segmentation
from nst_jax.methods import blend_tiles
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
# Rounds of cascade + smoothing. The smoothing flattens part of what the transform gave (on the paper's pairs the
# segmented style loss at relu1_1 rose up to 5x through it), and a second round on the smoothed result restores
# most of it while the smoothing keeps the result photographic (docs/photoreal.md, "The fast method").
DEFAULT_ROUNDS = 2


@dataclasses.dataclass(frozen=True)
class Model(wct_stylize.Model):
  """The encoder and the unpooling decoders of the levels, ready to run (`make_model`)."""

  @property
  def levels(self) -> tuple[str, ...]:
    """The cascade's levels this model has decoders for, coarse to fine."""
    return tuple(layer for layer in LEVELS if layer in self.decoders)


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


def transfer(content: np.ndarray, *, model: Model, transforms: Mapping[str, Sequence[ops.StyleTransform]],
             content_masks: np.ndarray, alpha: float = 1.0, levels: Sequence[str] | None = None,
             max_pixels: int = wct_stylize.DEFAULT_MAX_PIXELS, tiling: blend_tiles.Tiling | None = None,
             eps: float = ops.EPS) -> np.ndarray:
  """The PhotoWCT cascade on an (H, W, 3) content with per-region style transforms (`region_transforms`).

  Each level runs through `wct.stylize.run_level`: whole, or above `max_pixels` in overlapping tiles whitened with
  the whole image's statistics (each tile decoded with its own pooling switches).

  Args:
    content: RGB [0, 1].
    model: `make_model`'s.
    transforms: {level: [region k's transform]}.
    content_masks: (K, H, W) region masks of the content (summing to 1 at each pixel).
    alpha: content/style blend of the features at every level.
    levels: the levels to run, coarse to fine (default: `check_levels`').
    max_pixels: larger images run in tiles (`tiling`, default `blend_tiles.tiling_for_budget`).
    tiling: force tiles of this layout.
    eps: eigenvalue regularisation of the whitening and colouring.

  Returns:
    (H, W, 3) float32 in [0, 1].
  """
  levels = check_levels(model, levels)
  masks = np.asarray(content_masks, np.float32)
  per_region = [{layer: transforms[layer][k] for layer in levels} for k in range(len(masks))]
  current = np.asarray(content, np.float32)
  for layer in levels:
    current = wct_stylize.run_level(model, layer, current, masks, per_region, None, alpha, max_pixels=max_pixels,
                                    tiling=tiling, eps=eps)
  if not np.all(np.isfinite(current)):
    raise NSTError("the PhotoWCT decoders produced non-finite values; the decoder file may be damaged")
  return current


@dataclasses.dataclass(frozen=True)
class Result:
  """A PhotoWCT run: the final image, the transform's image before smoothing, and timings.

  Attributes:
    image: (H, W, 3) float32 in [0, 1].
    transferred: the last round's cascade image (after the region chroma step), before smoothing.
    seconds: {'transfer', 'smoothing', 'polish'}: wall seconds of each step.
    smoothing_iterations: conjugate-gradient iterations over all rounds and tiles (the most of any tile; 0 without
      smoothing).
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
            rounds: int = DEFAULT_ROUNDS, max_pixels: int = wct_stylize.DEFAULT_MAX_PIXELS,
            tiling: blend_tiles.Tiling | None = None, eps: float = ops.EPS) -> Result:
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
    rounds: run the cascade, the chroma step and the smoothing this many times, each round on the last one's
      result: the decoders only approximate the encoder's inverse and the smoothing flattens part of what the
      transform gave, so one round leaves the style's statistics short; a second brings them closer.
    max_pixels: larger contents run in tiles (`tiling`, default `blend_tiles.tiling_for_budget`): the cascade
      whitened with the whole image's statistics, the smoothing solved per tile (`closed_form.smooth_in_tiles`).
    tiling: force tiles of this layout.
    eps: eigenvalue regularisation of the whitening and colouring.

  Returns:
    The `Result`.
  """
  content = np.asarray(content, np.float32)
  style = np.asarray(style, np.float32)
  seg = segmentation.match(content_seg, style_seg, content_shape=content.shape[:2], style_shape=style.shape[:2])
  if not 0.0 <= alpha <= 1.0:
    raise NSTError(f"--alpha must be in [0, 1], got {alpha}")
  if not (isinstance(rounds, int) and 1 <= rounds <= 5):
    raise NSTError(f"--rounds must be a whole number from 1 to 5, got {rounds}")
  tiles = tiling or (blend_tiles.tiling_for_budget(max_pixels)
                     if content.shape[0] * content.shape[1] > max_pixels else None)
  seconds = {"transfer": 0.0, **({"smoothing": 0.0} if smooth else {})}
  start = time.perf_counter()
  levels = check_levels(model, levels)
  transforms = region_transforms(model, style, seg.style, levels=levels, eps=eps)
  image, iterations, laplacian = content, 0, None
  for _ in range(rounds):
    transferred = transfer(image, model=model, transforms=transforms, content_masks=seg.content, alpha=alpha,
                           levels=levels, max_pixels=max_pixels, tiling=tiles, eps=eps)
    if region_chroma:
      transferred = np.clip(color.match_region_chroma(transferred, style, content_masks=seg.content,
                                                      style_masks=seg.style), 0.0, 1.0)
    seconds["transfer"] += time.perf_counter() - start
    image = transferred
    if smooth:
      start = time.perf_counter()
      if tiles is None:
        if laplacian is None:  # the photo's affinity, shared by every round
          laplacian = matting.precompute(content, eps=matting_eps)
        solved = closed_form.smooth(stylized=transferred, content=content, lam=lam, eps=matting_eps,
                                    laplacian=laplacian)
      else:  # each tile's affinity is recomputed per round: keeping them all would hold ~220 bytes a pixel
        solved = closed_form.smooth_in_tiles(stylized=transferred, content=content, tile=tiles.tile,
                                             overlap=tiles.overlap, lam=lam, eps=matting_eps)
      image, iterations = np.clip(solved.image, 0.0, 1.0), iterations + solved.iterations
      seconds["smoothing"] += time.perf_counter() - start
    start = time.perf_counter()
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
