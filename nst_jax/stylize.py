"""Gatys et al. (2016) optimisation-based style transfer with the controls of Gatys et al. (2017).

The image is optimised directly, as RGB in [0, 1]; the weight source's preprocessing is applied inside the loss,
so the same code serves Caffe-style (BGR, 0..255, mean) and torchvision-style (RGB, mean/std) weights. Everything
the loss needs (VGG parameters, content features, style targets, masks) is an argument of the jitted step, never
a baked-in constant, so one compilation serves the whole run.

Style targets are organised in *regions* (Gatys et al. 2017, spatial control): region r has a mask in image
space, a weight, a blend of the style images and a stroke-scale factor. Without masks there is one region
covering the image whose targets are the blended Gram matrices of all styles; `--style_masks` gives one region
per style; a depth map splits every region into depth bins whose style images are resized by a per-bin scale
(larger strokes in front). Masks are carried through the network (3x3 average per conv, 2x2 average per pool) and
every region's Gram matrix is computed from its masked features (guided Gram matrices).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import color, guidance, image_io, losses, matting, mrf, optim, segmentation, structure, vgg
from nst_jax.errors import NSTError
from nst_jax.progress import ProgressBar
from nst_jax.weights import VGGWeights

CONTENT_LAYERS = ("relu4_2",)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
# Stroke-size presets (Gatys et al. 2016, fig. 4 / 2017 sec. 4): deeper layers match larger structures.
STYLE_LAYER_PRESETS = {
    "fine": ("relu1_1", "relu2_1"),
    "medium": ("relu1_1", "relu2_1", "relu3_1"),
    "coarse": STYLE_LAYERS,
    "structure": ("relu3_1", "relu4_1", "relu5_1"),
}
MRF_LAYERS = ("relu3_1", "relu4_1")  # Li & Wand (2016)
STYLE_LOSSES = ("gram", "mrf")
STYLE_LAYER_BALANCES = ("none", "target")
CONTENT_LAYER_BALANCES = ("none", "target")


@dataclasses.dataclass(frozen=True)
class StylizeConfig:
  """Settings of one run. Loss weights apply to the normalised losses of `nst_jax.losses`.

  Per-style tuples (`style_blend`, `style_scale`, `style_layer_sets`) may have one entry, used for every style.
  """

  size: int = 512
  iterations: int = 500
  optimizer: str = "lbfgs"
  learning_rate: float | None = None
  optimizer_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  lr_schedule: str = "constant"
  normalize_gradients: bool = False
  content_weight: float = 1.0
  style_weight: float = 10.0
  tv_weight: float = 10.0
  range_weight: float = 0.0                      # penalty on values outside [0, 1] (`losses.range_penalty`)
  content_layers: tuple[str, ...] = CONTENT_LAYERS
  style_layers: tuple[str, ...] = STYLE_LAYERS
  style_blend: tuple[float, ...] = ()            # empty: equal weights
  style_scale: tuple[float, ...] = (1.0,)        # style image long side = size * scale
  style_layer_sets: tuple[tuple[str, ...], ...] = ()  # per style; scale mixing (Gatys et al. 2017)
  style_layer_weights: Mapping[str, float] = dataclasses.field(default_factory=dict)  # relative w_l, default 1
  style_loss: str = "gram"                       # gram | mrf
  preserve_colors: str = "none"                  # none | luminance | histogram
  color_method: str = "cholesky"                 # histogram matching: cholesky | eigen
  laplacian_weight: float = 0.0
  laplacian_pool_sizes: tuple[int, ...] = (4, 16)
  edge_weight: float = 0.0
  matting_weight: float = 0.0                    # Luan et al.'s λ on sum_c p_cᵀ L p_c (summed, image in [0, 1])
  matting_eps: float = matting.EPSILON
  gram_normalization: str = "squared_mass"       # guided Gram matrices: squared_mass | channels_mass (Luan et al.)
  depth_regions: int = 3
  depth_near_scale: float = 2.0
  depth_far_scale: float = 0.5
  init: str = "content"  # content | noise | style | path of an image
  pooling: str = "avg"
  mask_pooling: str | None = None  # how guides cross pooling layers; None: like `pooling`
  normalize_network: bool = False  # Gatys et al.'s mean-activation-1 rescaling of every filter
  style_layer_balance: str = "none"  # none | target: each layer's E_l relative to its target's (`balance_by_target`)
  content_layer_balance: str = "none"  # none | target: each content layer's MSE relative to mean(P^2) of its target
  seed: int = 0
  save_every: int = 0  # 0: no intermediate images
  log_every: int = 10
  stall_rtol: float | None = 1e-6  # L-BFGS stops once STALL_WINDOW iterations lower the loss by less (relative)


@dataclasses.dataclass
class StylizeResult:
  image: np.ndarray                  # (H, W, 3) float32 in [0, 1]
  loss_history: np.ndarray           # total loss evaluated at each iteration
  initial_terms: dict[str, float]    # weighted loss terms of the initial image
  final_terms: dict[str, float]      # the same for the result


@dataclasses.dataclass(frozen=True)
class Region:
  """One guided style region: image-space mask, weight, blend over the styles and a stroke-scale factor."""

  mask: np.ndarray                    # (H, W) in [0, 1]
  weight: float
  style_weights: tuple[float, ...]    # one per style, summing to 1
  scale: float


def _per_style(values: Sequence, count: int, flag: str) -> list:
  if len(values) == 1:
    return list(values) * count
  if len(values) != count:
    raise NSTError(f"{flag} has {len(values)} entries for {count} style image(s); give one or one per style")
  return list(values)


def style_layer_sets(config: StylizeConfig, num_styles: int) -> list[tuple[str, ...]]:
  if config.style_layer_sets:
    return [tuple(s) for s in _per_style(config.style_layer_sets, num_styles, "--style_layer_sets")]
  return [config.style_layers] * num_styles


def blend_weights(config: StylizeConfig, num_styles: int) -> np.ndarray:
  raw = np.asarray(_per_style(config.style_blend or (1.0,), num_styles, "--style_blend"), np.float64)
  if np.any(raw < 0) or not np.all(np.isfinite(raw)) or raw.sum() <= 0:
    raise NSTError(f"--style_blend must be non-negative numbers with a positive sum, got {list(raw)}")
  return raw / raw.sum()


def validate(config: StylizeConfig, arch: str, *, num_styles: int = 1, has_content: bool = True) -> None:
  """Refuses bad settings before any expensive work, each with a one-line message naming the flag."""
  if config.iterations < 1:
    raise NSTError(f"--iterations must be at least 1, got {config.iterations}")
  if config.size < 16:
    raise NSTError(f"--size must be at least 16 pixels, got {config.size}")
  layer_flags = [("--style_layers", config.style_layers)]
  if has_content and config.content_weight > 0:
    layer_flags.insert(0, ("--content_layers", config.content_layers))
  layer_flags += [("--style_layer_sets", s) for s in config.style_layer_sets]
  for flag, names in layer_flags:
    if not names:
      raise NSTError(f"{flag} is empty")
    try:
      vgg.check_layers(arch, names)
    except ValueError as e:
      raise NSTError(f"{flag}: {e}") from None
  for flag, value in (("--content_weight", config.content_weight), ("--style_weight", config.style_weight),
                      ("--tv_weight", config.tv_weight), ("--range_weight", config.range_weight),
                      ("--laplacian_weight", config.laplacian_weight),
                      ("--edge_weight", config.edge_weight), ("--matting_weight", config.matting_weight)):
    if not math.isfinite(value) or value < 0:
      raise NSTError(f"{flag} must be a finite number >= 0, got {value}")
  for name, value in config.style_layer_weights.items():
    try:
      vgg.check_layers(arch, [name])
    except ValueError as e:
      raise NSTError(f"--style_layer_weights: {e}") from None
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
      raise NSTError(f"--style_layer_weights: {name}={value} must be a finite number >= 0")
  for scale in config.style_scale:
    if not (math.isfinite(scale) and 0.05 <= scale <= 8):
      raise NSTError(f"--style_scale values must lie in [0.05, 8], got {scale}")
  if config.pooling not in ("max", "avg"):
    raise NSTError(f"--pooling must be 'max' or 'avg', got {config.pooling!r}")
  if config.mask_pooling not in (None, "max", "avg"):
    raise NSTError(f"--mask_pooling must be 'max' or 'avg', got {config.mask_pooling!r}")
  if config.style_loss not in STYLE_LOSSES:
    raise NSTError(f"--style_loss must be one of {', '.join(STYLE_LOSSES)}, got {config.style_loss!r}")
  if config.style_layer_balance not in STYLE_LAYER_BALANCES:
    raise NSTError(f"--style_layer_balance must be one of {', '.join(STYLE_LAYER_BALANCES)}, "
                   f"got {config.style_layer_balance!r}")
  if config.content_layer_balance not in CONTENT_LAYER_BALANCES:
    raise NSTError(f"--content_layer_balance must be one of {', '.join(CONTENT_LAYER_BALANCES)}, "
                   f"got {config.content_layer_balance!r}")
  if config.preserve_colors not in color.COLOR_MODES:
    raise NSTError(f"--preserve_colors must be one of {', '.join(color.COLOR_MODES)}, "
                   f"got {config.preserve_colors!r}")
  if config.color_method not in ("cholesky", "eigen"):
    raise NSTError(f"--color_method must be 'cholesky' or 'eigen', got {config.color_method!r}")
  if not has_content and config.preserve_colors != "none":
    raise NSTError("--preserve_colors needs a content image")
  if not has_content and (config.laplacian_weight or config.edge_weight):
    raise NSTError("--laplacian_weight and --edge_weight preserve a content image's structure; there is none")
  if not has_content and config.matting_weight:
    raise NSTError("--matting_weight keeps the content's local colour structure; there is no content")
  if not (math.isfinite(config.matting_eps) and config.matting_eps > 0):
    raise NSTError(f"--matting_eps must be a finite number > 0, got {config.matting_eps}")
  if config.gram_normalization not in guidance.GRAM_NORMALIZATIONS:
    raise NSTError(f"--gram_normalization must be one of {', '.join(guidance.GRAM_NORMALIZATIONS)}, "
                   f"got {config.gram_normalization!r}")
  if config.depth_regions < 1:
    raise NSTError(f"--depth_regions must be at least 1, got {config.depth_regions}")
  blend_weights(config, num_styles)
  _per_style(config.style_scale, num_styles, "--style_scale")
  style_layer_weights(config, tuple(dict.fromkeys(n for s in style_layer_sets(config, num_styles) for n in s)))
  # Building the optimizer is cheap; doing it here refuses bad settings before weights and features are used.
  make_optimizer(config)


def make_optimizer(config: StylizeConfig):
  return optim.make_optimizer(config.optimizer, learning_rate=config.learning_rate, schedule=config.lr_schedule,
                              iterations=config.iterations, options=dict(config.optimizer_options),
                              normalize_gradients=config.normalize_gradients)


def check_memory(shape: tuple[int, int], arch: str, layers: Sequence[str]) -> None:
  """Refuses a request whose VGG forward + backward pass cannot fit in this machine's memory."""
  need = vgg.estimate_training_bytes(arch, shape, layers)
  have = _physical_memory_bytes()
  if have and need > 0.8 * have:
    raise NSTError(f"a {shape[1]}x{shape[0]} image needs about {need / 2**30:.1f} GiB for one VGG pass and "
                   f"this machine has {have / 2**30:.1f} GiB; choose a smaller --size")


def _physical_memory_bytes() -> int:
  try:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError, AttributeError):
    return 0


_NORMALIZED: dict[tuple[int, str], tuple[dict, dict]] = {}  # (id(params), pooling) -> (params, normalised)


def normalized_params(weights: VGGWeights, pooling: str) -> dict:
  """`vgg.normalize_activations` of the weights over a fixed, generated reference set (the demo photo and the two
  generated paintings at 128 px), so that the loss scale does not depend on the images of a run. Memoised per
  weights object, since it costs a few forward passes."""
  key = (id(weights.params), pooling)
  if key not in _NORMALIZED:
    from nst_jax import demo  # matplotlib's sample photo; imported only when this is asked for
    references = [demo.default_content(), demo.swirl_painting(128), demo.mosaic_painting(128)]
    images = [weights.preprocessing.apply(jnp.asarray(image_io.resize_long_side(x, 128)))[None]
              for x in references]
    if len(_NORMALIZED) >= 4:
      _NORMALIZED.pop(next(iter(_NORMALIZED)))
    # The params object is kept in the value, so its id cannot be reused by another object while cached.
    _NORMALIZED[key] = (weights.params, vgg.normalize_activations(weights.arch, weights.params, images,
                                                                  pooling=pooling))
  return _NORMALIZED[key][1]


def build_regions(config: StylizeConfig, shape: tuple[int, int], num_styles: int, *,
                  style_masks: Sequence[np.ndarray] | None = None,
                  depth: np.ndarray | None = None) -> list[Region]:
  """Spatial groups (one per style mask, or one blended group) times depth bins (or one bin)."""
  h, w = shape
  blend = blend_weights(config, num_styles)
  if style_masks:
    if len(style_masks) != num_styles:
      raise NSTError(f"--style_masks has {len(style_masks)} mask(s) for {num_styles} style image(s)")
    groups = [(guidance.resize_mask(m, h, w), tuple(float(j == i) for j in range(num_styles)))
              for i, m in enumerate(style_masks)]
  else:
    groups = [(np.ones((h, w), np.float32), tuple(float(b) for b in blend))]
  if depth is not None:
    depth = guidance.resize_mask(depth, h, w)
    n = config.depth_regions
    bins = list(zip(structure.depth_regions(depth, num_regions=n),
                    structure.depth_region_scales(n, near_scale=config.depth_near_scale,
                                                  far_scale=config.depth_far_scale),
                    structure.depth_region_weights(n)))
  else:
    bins = [(np.ones((h, w), np.float32), 1.0, 1.0)]
  return [Region(mask=np.asarray(g_mask * d_mask, np.float32), weight=float(d_weight), style_weights=sw,
                 scale=float(d_scale))
          for g_mask, sw in groups for d_mask, d_scale, d_weight in bins]


def needs_guidance(regions: Sequence[Region]) -> bool:
  """False for the plain case, one region covering the whole image, whose guided Gram matrices are plain ones."""
  return len(regions) != 1 or not bool(np.all(regions[0].mask == 1.0))


def prepare_styles(styles: Sequence[np.ndarray], *, content: np.ndarray | None,
                   config: StylizeConfig) -> list[np.ndarray]:
  """Colour control (Gatys et al. 2017, sec. 5) applied to the style images before their statistics are taken."""
  if config.preserve_colors == "histogram":
    # Not clipped: clipping would undo the matched statistics, and VGG takes any real-valued input.
    return [color.match_color_histogram(s, content, method=config.color_method) for s in styles]
  if config.preserve_colors == "luminance":
    return [np.asarray(color.match_luminance(s, content), np.float32) for s in styles]
  return list(styles)


def style_layer_weights(config: StylizeConfig, style_layers: Sequence[str]) -> dict[str, float]:
  """Gatys et al.'s w_l: the relative weights of `config.style_layer_weights` (1 for layers not named), normalised
  to sum to 1 over the style layers in use, so the default is w_l = 1/L."""
  raw = {name: float(config.style_layer_weights.get(name, 1.0)) for name in style_layers}
  total = sum(raw.values())
  if total <= 0:
    raise NSTError("--style_layer_weights gives every style layer in use weight 0")
  return {name: w / total for name, w in raw.items()}


def make_loss_terms(model: vgg.VGG, preprocessing, config: StylizeConfig, *, style_layers: Sequence[str],
                    has_content: bool, hed: VGGWeights | None = None,
                    guided: bool = True) -> Callable[[jax.Array, Mapping[str, Any]], dict[str, jax.Array]]:
  """Returns `terms(image, inputs)` -> the weighted loss terms. `inputs` holds 'params', 'content'
  (layer -> features), 'style' (layer -> (R, C, C) targets or MRF patch banks), 'masks' (layer -> (R, h, w)),
  'region_weights' (layer -> (R,)), and the structure targets when those losses are on; optionally
  `vgg.BACKWARD_KERNELS` (`vgg.backward_kernels(params)`, for cheaper image gradients).

  `guided=False` promises one region whose mask is all ones (`needs_guidance`): the Gram matrices are then taken
  of the features directly, which gives the same values without multiplying every feature map by ones."""
  layer_weight = style_layer_weights(config, style_layers)

  def terms(image: jax.Array, inputs: Mapping[str, Any]) -> dict[str, jax.Array]:
    variables = {"params": inputs["params"]}
    if vgg.BACKWARD_KERNELS in inputs:
      variables[vgg.BACKWARD_KERNELS] = inputs[vgg.BACKWARD_KERNELS]
    feats = model.apply(variables, preprocessing.apply(image)[None])
    out = {}
    if has_content and config.content_weight > 0:
      out["content"] = config.content_weight * losses.content_loss(features=feats, targets=inputs["content"],
                                                                   layer_weights=inputs["content_weights"])
    if config.style_loss == "mrf":
      # Each region matches patches only against its own styles' patches, weighted by its mask (patch centres).
      out["style"] = config.style_weight * sum(
          layer_weight[name] * sum(
              weight * mrf.mrf_loss(features=feats[name], bank=bank, patch_weights=mrf.patch_centre_weights(
                  inputs["masks"][name][r], bank["patches"].shape[1]))
              for r, (bank, weight) in enumerate(zip(inputs["style"][name], inputs["region_weights"][name])))
          for name in style_layers)
    elif not guided:
      out["style"] = config.style_weight * sum(
          layer_weight[name] * jnp.sum(inputs["region_weights"][name] * losses.style_layer_loss(
              gram=losses.gram_matrix(feats[name]), target_gram=inputs["style"][name]))
          for name in style_layers)
    else:
      # Region weights differ per layer (scale mixing), so the guided loss is summed layer by layer.
      out["style"] = config.style_weight * sum(
          guidance.guided_style_loss(features={name: feats[name]}, target_grams={name: inputs["style"][name]},
                                     masks={name: inputs["masks"][name]},
                                     region_weights=inputs["region_weights"][name],
                                     layer_weights={name: layer_weight[name]},
                                     normalization=config.gram_normalization)
          for name in style_layers)
    out["tv"] = config.tv_weight * losses.total_variation_loss(image=image)
    if config.range_weight > 0:
      out["range"] = config.range_weight * losses.range_penalty(image=image)
    if config.laplacian_weight > 0:
      out["laplacian"] = config.laplacian_weight * structure.laplacian_loss(
          image=image, content_laplacians=inputs["laplacian"])  # the pool sizes that fit the image
    if config.matting_weight > 0:
      out["matting"] = config.matting_weight * matting.matting_energy(image=image, laplacian=inputs["matting"])
    if config.edge_weight > 0:
      out["edge"] = config.edge_weight * structure.edge_loss(
          image_rgb01=image, target_edges=inputs["edges"], hed_params=inputs["hed_params"],
          hed_extras=inputs["hed_extras"], preprocessing=hed.preprocessing)
    return out

  return terms


def initial_image(init: str, *, content: np.ndarray | None, style: np.ndarray, seed: int,
                  shape: tuple[int, int] | None = None) -> np.ndarray:
  """The starting point: the content, white noise, the style resized to the output, or an image file."""
  h, w = shape if shape is not None else content.shape[:2]
  if init == "noise" or (init == "content" and content is None):
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=(h, w, 3)).astype(np.float32)
  if init == "content":
    return content.copy()
  if init == "style":
    return image_io.resize(style, h, w)
  return image_io.resize(image_io.load_image(init, what="--init image"), h, w)


def _as_list(styles) -> list[np.ndarray]:
  if isinstance(styles, np.ndarray) and styles.ndim == 3:
    return [styles]
  styles = list(styles)
  if not styles:
    raise NSTError("at least one style image is needed")
  return styles


@dataclasses.dataclass
class Problem:
  """Everything one optimisation needs: the loss terms, their jit-argument inputs and the starting image."""

  terms_fn: Callable[[jax.Array, Mapping[str, Any]], dict[str, jax.Array]]
  inputs: dict[str, Any]
  x0: np.ndarray
  content: np.ndarray | None  # resized, in colour (for luminance-only post-processing)


def stylize(*, content: np.ndarray | None, styles: Sequence[np.ndarray] | np.ndarray, weights: VGGWeights,
            config: StylizeConfig, style_masks: Sequence[np.ndarray] | None = None,
            depth: np.ndarray | None = None, hed_weights: VGGWeights | None = None,
            synthesis_shape: tuple[int, int] | None = None,
            on_intermediate: Callable[[int, np.ndarray], None] | None = None,
            progress: bool = True, content_seg: np.ndarray | None = None,
            style_seg: np.ndarray | None = None) -> StylizeResult:
  """Style transfer (or, with `content=None`, texture synthesis) by optimisation.

  `content` and `styles` are (H, W, 3) float images in [0, 1], resized here: the content to `config.size` on its
  long side, each style to `config.size * style_scale` (times a depth bin's scale). Without content the output
  has `synthesis_shape` (default: the first style's aspect ratio at `config.size`). `style_masks` (one (H, W)
  mask per style, any size) and `depth` ((H, W), brighter = nearer) live in content space. `hed_weights` serve
  the edge loss when `weights` lack HED side outputs.
  """
  problem = build_problem(content=content, styles=styles, weights=weights, config=config,
                          style_masks=style_masks, depth=depth, hed_weights=hed_weights,
                          synthesis_shape=synthesis_shape, content_seg=content_seg, style_seg=style_seg)
  result = optimize_image(problem.terms_fn, problem.inputs, problem.x0, config=config,
                          on_intermediate=on_intermediate, progress=progress)
  if config.preserve_colors == "luminance":
    result.image = np.asarray(color.combine_luminance(stylized=result.image, content=problem.content), np.float32)
  return result


def build_problem(*, content: np.ndarray | None, styles: Sequence[np.ndarray] | np.ndarray, weights: VGGWeights,
                  config: StylizeConfig, style_masks: Sequence[np.ndarray] | None = None,
                  depth: np.ndarray | None = None, hed_weights: VGGWeights | None = None,
                  synthesis_shape: tuple[int, int] | None = None, content_seg: np.ndarray | None = None,
                  style_seg: np.ndarray | None = None) -> Problem:
  """Validates the request, resizes the images and computes every target; see `stylize` for the arguments.

  `content_seg` and `style_seg` (both or neither, any size) are Luan et al.'s colour-coded segmentation maps of the
  content and of the single style image: each matched colour is a region whose target is the guided Gram matrix
  of the style image's pixels of that colour (`nst_jax.segmentation`), weighted by the region's content-mask mean.
  """
  styles = _as_list(styles)
  has_content = content is not None
  validate(config, weights.arch, num_styles=len(styles), has_content=has_content)
  segmented = content_seg is not None or style_seg is not None
  if segmented and (len(styles) != 1 or style_masks or depth is not None or config.style_loss != "gram"
                    or not has_content):
    raise NSTError("segmentation maps (--content_seg/--style_seg) take a content image, one style image and the "
                   "gram style loss, without --style_masks or --depth")
  use_content = has_content and config.content_weight > 0
  style_sets = style_layer_sets(config, len(styles))
  if config.style_loss == "mrf" and config.style_layers == STYLE_LAYERS and not config.style_layer_sets:
    style_sets = [MRF_LAYERS] * len(styles)
  style_layers = tuple(dict.fromkeys(name for s in style_sets for name in s))
  all_layers = tuple(dict.fromkeys((config.content_layers if use_content else ()) + style_layers))
  shape = (image_io.long_side_shape(content.shape, config.size) if has_content
           else synthesis_shape or image_io.long_side_shape(styles[0].shape, config.size))
  check_memory(shape, weights.arch, all_layers)
  hed = None
  if config.edge_weight > 0:
    hed = hed_weights if hed_weights is not None else weights
    structure.require_hed(hed)

  if has_content:
    content = image_io.resize(content, *shape)
  styles = prepare_styles(styles, content=content, config=config)
  net_content = color.luminance_image(content) if config.preserve_colors == "luminance" else content
  scales = _per_style(config.style_scale, len(styles), "--style_scale")
  if segmented:
    style_shape = image_io.long_side_shape(styles[0].shape, max(16, round(config.size * scales[0])))
    seg = segmentation.match(content_seg, style_seg, content_shape=shape, style_shape=style_shape)
    regions = [Region(mask=m, weight=1.0, style_weights=(1.0,), scale=1.0) for m in seg.content]
  else:
    regions = build_regions(config, shape, len(styles), style_masks=style_masks, depth=depth)

  model = vgg.VGG(weights.arch, all_layers, pooling=config.pooling)
  source_params = normalized_params(weights, config.pooling) if config.normalize_network else weights.params
  params = jax.tree.map(jnp.asarray, vgg.params_for(weights.arch, source_params, all_layers))
  features = jax.jit(lambda p, img: model.apply({"params": p}, weights.preprocessing.apply(img)[None]))
  inputs: dict[str, Any] = {"params": params}
  if use_content:
    content_feats = features(params, jnp.asarray(net_content))
    inputs["content"] = {name: content_feats[name] for name in config.content_layers}
    inputs["content_weights"] = content_layer_weights(
        {name: jnp.mean(jnp.square(t)) for name, t in inputs["content"].items()}, balance=config.content_layer_balance)

  style_feature_cache: dict[tuple[int, float], dict[str, jax.Array]] = {}

  def style_features(i: int, factor: float) -> dict[str, jax.Array]:
    key = (i, round(scales[i] * factor, 6))
    if key not in style_feature_cache:
      long_side = max(16, round(config.size * key[1]))
      check_memory(image_io.long_side_shape(styles[i].shape, long_side), weights.arch, all_layers)
      style_feature_cache[key] = features(params, jnp.asarray(image_io.resize_long_side(styles[i], long_side)))
    return style_feature_cache[key]

  masks = np.stack([r.mask for r in regions])
  mask_pooling = config.mask_pooling or config.pooling
  inputs["masks"] = jax.jit(lambda m: guidance.masks_at_layers(weights.arch, m, style_layers,
                                                               pooling=mask_pooling))(jnp.asarray(masks))
  if segmented:
    inputs["style"] = segmentation.style_targets(weights.arch, style_features(0, 1.0), seg.style, style_layers,
                                                 pooling=mask_pooling, normalization=config.gram_normalization)
    inputs["region_weights"] = segmentation.region_means(inputs["masks"])
  else:
    region_inputs = _region_banks if config.style_loss == "mrf" else _region_targets
    inputs["style"], inputs["region_weights"] = region_inputs(regions, style_layers, style_sets, style_features)
    if config.style_loss == "gram" and config.gram_normalization == "channels_mass":
      # Whole-image targets are plain Gram matrices, i.e. 'squared_mass' guided ones of a ones guide: rescale.
      inputs["style"] = {name: t / t.shape[-1] for name, t in inputs["style"].items()}
  if config.style_layer_balance == "target" and config.style_loss == "gram":
    inputs["region_weights"] = balance_by_target(inputs["style"], inputs["region_weights"])
  if config.matting_weight > 0:
    inputs["matting"] = matting.precompute(content, eps=config.matting_eps)  # the colour content is the guide
  if config.laplacian_weight > 0:
    inputs["laplacian"] = structure.content_laplacians(jnp.asarray(net_content), config.laplacian_pool_sizes)
  if config.edge_weight > 0:
    inputs["hed_params"] = jax.tree.map(jnp.asarray, hed.params)
    inputs["hed_extras"] = {k: jnp.asarray(v) for k, v in hed.extras.items() if k.startswith("hed/")}
    inputs["edges"] = structure.edge_target(content_rgb01=jnp.asarray(net_content), hed_params=inputs["hed_params"],
                                            hed_extras=inputs["hed_extras"], preprocessing=hed.preprocessing)

  # Computed once here rather than re-laid-out by XLA in every evaluation's backward pass (see nst_jax.vgg).
  inputs[vgg.BACKWARD_KERNELS] = jax.jit(vgg.backward_kernels)(params)

  terms_fn = make_loss_terms(model, weights.preprocessing, config, style_layers=style_layers,
                             has_content=has_content, hed=hed,
                             guided=needs_guidance(regions) or config.gram_normalization != "squared_mass")
  x0 = initial_image(config.init, content=net_content, style=styles[0], seed=config.seed, shape=shape)
  return Problem(terms_fn=terms_fn, inputs=inputs, x0=x0, content=content)


def _region_banks(regions: Sequence[Region], style_layers: Sequence[str], style_sets: Sequence[Sequence[str]],
                  style_features) -> tuple[dict, dict]:
  """Per layer, one MRF patch bank per region (the pooled patches of the region's styles at the region's scale;
  blend weights do not apply, the nearest-neighbour search picks from all) and the region weights as floats."""
  banks, weights = {}, {}
  for name in style_layers:
    banks[name], weights[name] = [], []
    for region in regions:
      parts = [mrf.style_patch_bank(style_features(i, region.scale)[name])
               for i, sw in enumerate(region.style_weights) if sw > 0 and name in style_sets[i]]
      banks[name].append({key: jnp.concatenate([part[key] for part in parts]) for key in parts[0]}
                         if parts else None)
      weights[name].append(region.weight if parts else 0.0)
    # A region that skips this layer (scale mixing) keeps its place with a one-patch dummy bank and weight 0.
    like = next(bank for bank in banks[name] if bank is not None)
    banks[name] = [bank if bank is not None else jax.tree.map(lambda a: jnp.zeros_like(a[:1]), like)
                   for bank in banks[name]]
  return banks, weights


def _region_targets(regions: Sequence[Region], style_layers: Sequence[str],
                    style_sets: Sequence[Sequence[str]], style_features) -> tuple[dict, dict]:
  """Per layer: (R, C, C) blended Gram targets and (R,) region weights. A region whose styles all skip a layer
  (scale mixing) gets weight 0 there."""
  targets, weights = {}, {}
  for name in style_layers:
    grams, region_weights = [], []
    for region in regions:
      parts = [(sw, losses.gram_matrix(style_features(i, region.scale)[name])[0])
               for i, sw in enumerate(region.style_weights) if sw > 0 and name in style_sets[i]]
      total = sum(sw for sw, _ in parts)
      grams.append(sum(sw * g for sw, g in parts) / total if parts else None)
      region_weights.append(region.weight if parts else 0.0)
    like = next(g for g in grams if g is not None)  # some region uses every layer in style_layers
    targets[name] = jnp.stack([g if g is not None else jnp.zeros_like(like) for g in grams])
    weights[name] = jnp.asarray(region_weights, jnp.float32)
  return targets, weights


def balance_by_target(targets: Mapping[str, jax.Array], region_weights: Mapping[str, jax.Array]) -> dict:
  """Divides every (layer, region) weight by E_l of an all-zero Gram matrix against that target, ||A||^2 / (4 N^2),
  so that each layer's style loss is a relative error that starts near 1 whatever the layer's activation scale.

  Raw VGG activations shrink by ~100x from relu1_1 to relu5_1, so E_l (fourth power of the activations) spans
  ~6 orders of magnitude and the deep layers (large strokes, Gatys et al. 2016 fig. 4) would barely count."""
  out = {}
  for name, grams in targets.items():
    zero_loss = losses.style_layer_loss(gram=jnp.zeros_like(grams), target_gram=grams)  # (R,)
    out[name] = region_weights[name] / jnp.maximum(zero_loss, 1e-12)
  return out


def content_layer_weights(mean_squares: Mapping[str, jax.Array], *, balance: str) -> dict[str, jax.Array]:
  """{layer: w_l} of the content loss from each target's mean square mean(P_l^2): 1/L each, or with balance
  "target" 1/(L mean(P_l^2)), which makes each layer's term a relative error that does not change when the
  network's activations at that layer are scaled by a constant."""
  count = len(mean_squares)
  if balance == "target":
    return {name: 1.0 / (count * jnp.maximum(jnp.asarray(ms, jnp.float32), 1e-12)) for name, ms in mean_squares.items()}
  return {name: jnp.asarray(1.0 / count, jnp.float32) for name in mean_squares}


STALL_WINDOW = 10


def stalled(losses: np.ndarray, *, rtol: float | None, window: int = STALL_WINDOW) -> bool:
  """Whether the last `window` iterations of `losses` lowered the loss by at most `rtol` of its value.

  A line-search L-BFGS never raises the loss; once it stops lowering it, the iterate has reached float32 precision
  (a line search that finds no lower value returns a zero step, and the next iteration repeats it), so the rest would
  change nothing -- torch's L-BFGS stops there by tolerance_change. An Adam loss can rise and fall, so the test is
  only for L-BFGS."""
  if rtol is None or len(losses) <= window:
    return False
  before, now = float(losses[-window - 1]), float(losses[-1])
  return before - now <= rtol * abs(before)


def optimize_image(terms_fn, inputs, x0, *, config: StylizeConfig,
                   on_intermediate: Callable[[int, np.ndarray], None] | None = None,
                   progress: bool = True, start: int = 0, opt_state: Any = None,
                   on_checkpoint: Callable[[int, np.ndarray, Any], None] | None = None, checkpoint_every: int = 0,
                   label: str | None = None) -> StylizeResult:
  """Minimises sum(terms_fn(x, inputs).values()) over the image x, starting at x0, up to config.iterations steps.

  Resuming (`nst_jax.highres`): `start` iterations are already done and `opt_state` is the optimizer state saved
  then; x0 and opt_state may be device arrays with any sharding, which the jitted steps keep. `on_checkpoint(
  iteration, image, opt_state)` runs every `checkpoint_every` iterations before the last. L-BFGS with a line search
  stops early when the loss has stalled (`stalled`, `config.stall_rtol`): loss_history is then shorter."""

  def total_loss(x, inputs):
    return sum(terms_fn(x, inputs).values())

  optimizer = make_optimizer(config)
  x = jnp.asarray(x0, jnp.float32)
  if opt_state is None:
    # optax may alias one buffer in several state leaves; copies keep buffer donation in the runner valid.
    opt_state = jax.tree.map(jnp.copy, optimizer.init(x))
  chunk = _chunk_size(config, checkpoint_every)
  line_search = optim.has_linesearch_state(opt_state)
  run = optim.make_chunk_runner(total_loss, optimizer, chunk_size=chunk, reuse_linesearch_value=line_search)
  eval_terms = jax.jit(terms_fn)
  initial_terms = {k: float(v) for k, v in eval_terms(x, inputs).items()}
  bar = ProgressBar(config.iterations, label=label or f"{config.optimizer} ") if progress else None
  history: list[np.ndarray] = []
  last_good = np.asarray(x)
  done = start
  while done < config.iterations:
    steps = min(chunk, config.iterations - done)
    x, opt_state, chunk_losses = run(x, opt_state, inputs, steps)
    chunk_losses = np.asarray(chunk_losses[:steps])
    if not np.all(np.isfinite(chunk_losses)):
      bad = done + int(np.argmin(np.isfinite(chunk_losses))) + 1
      if bar:
        bar.close()
      raise NonFiniteLossError(f"the loss became NaN/inf at iteration {bad}; lower --learning_rate or the loss "
                               f"weights", last_good_image=np.clip(last_good, 0, 1), iteration=done)
    history.append(chunk_losses)
    done += steps
    last_good = np.asarray(x)
    if bar:
      bar.update(done, {k: float(v) for k, v in eval_terms(x, inputs).items()})
    if on_intermediate and config.save_every and done % config.save_every == 0 and done < config.iterations:
      on_intermediate(done, np.clip(last_good, 0.0, 1.0))
    if on_checkpoint and checkpoint_every and done % checkpoint_every == 0 and done < config.iterations:
      on_checkpoint(done, last_good, opt_state)
    if line_search and done < config.iterations and stalled(np.concatenate(history[-STALL_WINDOW - 1:]),
                                                            rtol=config.stall_rtol):
      if bar:
        bar.close()
        bar = None
      if progress:
        print(f"{label or ''}stopped at iteration {done}: the loss fell by under {config.stall_rtol:g} (relative) "
              f"in {STALL_WINDOW} iterations", flush=True)
      break
  if bar:
    bar.close()
  final_terms = {k: float(v) for k, v in eval_terms(x, inputs).items()}
  return StylizeResult(image=np.clip(last_good, 0.0, 1.0),
                       loss_history=np.concatenate(history) if history else np.zeros((0,), np.float32),
                       initial_terms=initial_terms, final_terms=final_terms)


def _chunk_size(config: StylizeConfig, checkpoint_every: int = 0) -> int:
  """Steps per host round-trip: the logging interval, shortened so that intermediate saves and checkpoints land on
  time."""
  chunk = max(1, config.log_every)
  for every in (config.save_every, checkpoint_every):
    if every:
      chunk = math.gcd(chunk, every)
  return min(chunk, config.iterations)


class NonFiniteLossError(NSTError):
  """The optimisation diverged; carries the last finite image so that no work is lost."""

  def __init__(self, message: str, *, last_good_image: np.ndarray, iteration: int):
    super().__init__(message)
    self.last_good_image = last_good_image
    self.iteration = iteration
