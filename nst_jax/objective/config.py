"""The settings of one optimisation-based stylisation (`StylizeConfig`), validated once when they are made, and
the rules that derive values from them (`nst_jax.objective.plan.resolve_plan` applies them once per run).

Field-level checks (ranges, names, the optimizer) run in `StylizeConfig.__post_init__`, so a config that exists is
valid; what also depends on the network or the images (layer names of an architecture, one entry per style, a
content image for colour and structure controls) is checked once by `check_request`, before any expensive work.
Every message names the field (`StylizeConfig.style_weight`); the command line puts its flag in its place.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nst_jax import optim
from nst_jax.errors import NSTError
from nst_jax.losses import color, guidance, matting, octaves
from nst_jax.models import vgg
from nst_jax.objective.registry import STYLE_LOSS_TERMS

CONTENT_LAYERS = ("relu4_2",)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
# Stroke-size presets (Gatys et al. 2016, fig. 4 / 2017 sec. 4). Larger marks come from matching the shallow
# layers on the image downsampled 2x (medium) or 4x (coarse) as well (`nst_jax.losses.octaves`): on hed-vgg16 the
# deep layers carry a small share of the style loss, and weighting them up prints their pooling grid before the
# strokes grow. `structure` is the deep layers alone.
STYLE_LAYER_PRESETS = {
    "fine": ("relu1_1", "relu2_1"),
    "medium": STYLE_LAYERS + ("relu1_1@2", "relu2_1@2"),
    "coarse": STYLE_LAYERS + ("relu1_1@4", "relu2_1@4"),
    "structure": ("relu3_1", "relu4_1", "relu5_1"),
}
STYLE_LOSSES = tuple(STYLE_LOSS_TERMS)
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
  style_loss: str = "gram"                       # a name of `registry.STYLE_LOSS_TERMS`: gram | mrf | swd
  preserve_colors: str = "none"                  # none | luminance | histogram
  # The result's chroma statistics set to the styles' (`color.match_chroma_statistics`): on, off, or auto = on
  # for the MRF loss alone, whose patch matching leaves the pixels' chroma free (a gray style otherwise gives a
  # coloured, fringed result), and only without preserve_colors, masks or segmentation.
  style_colors: str = "auto"
  color_method: str = "cholesky"                 # histogram matching: cholesky | eigen
  laplacian_weight: float = 0.0
  laplacian_pool_sizes: tuple[int, ...] = (4, 16)
  edge_weight: float = 0.0
  matting_weight: float = 0.0                    # Luan et al.'s λ on sum_c p_cᵀ L p_c (summed, image in [0, 1])
  matting_eps: float = matting.EPSILON
  # Ruder et al.'s long-term temporal loss towards earlier frames' results warped into this frame (a clip's frames
  # after the first; the warped results come as guides, `nst_jax.methods.video.gatys_clip`).
  temporal_weight: float = 0.0
  gram_normalization: str = "squared_mass"       # guided Gram matrices: squared_mass | channels_mass (Luan et al.)
  depth_regions: int = 3
  depth_near_scale: float = 2.0
  depth_far_scale: float = 0.5
  # colors | content | noise | style | path of an image; colors: the content in the styles' colours (see
  # `start_kind` and `images.initial_image`)
  init: str = "colors"
  # Share of white noise blended into a content, colours, style or file start: an area of the start that is flat
  # gets the same gradient at every pixel and stays flat, so without it skies and walls stay un-styled. None:
  # `start_noise` (0.2; 0.3 when colours are preserved).
  init_noise: float | None = None
  # How 'colors' moves the content's colours to the styles': distribution (the whole colour distribution,
  # `color.match_region_distributions`) or moments (mean and covariance, a linear map, which turns a painting of a
  # few distinct colour groups into a blend of them).
  start_colors: str = "distribution"
  pooling: str = "avg"
  mask_pooling: str | None = None  # how guides cross pooling layers; None: like `pooling`
  normalize_network: bool = False  # Gatys et al.'s mean-activation-1 rescaling of every filter
  style_layer_balance: str = "none"  # none | target: each layer's E_l relative to its target's (`balance_by_target`)
  content_layer_balance: str = "none"  # none | target: each content layer's MSE relative to mean(P^2) of its target
  seed: int = 0
  save_every: int = 0  # 0: no intermediate images
  log_every: int = 10
  stall_rtol: float | None = 1e-6  # L-BFGS stops once STALL_WINDOW iterations lower the loss by less (relative)


  def __post_init__(self) -> None:
    for name in ("content_layers", "style_layers", "style_blend", "style_scale", "laplacian_pool_sizes"):
      object.__setattr__(self, name, tuple(getattr(self, name)))
    object.__setattr__(self, "style_layer_sets", tuple(tuple(s) for s in self.style_layer_sets))
    if self.iterations < 1:
      raise NSTError(f"StylizeConfig.iterations must be at least 1, got {self.iterations}")
    if self.size < 16:
      raise NSTError(f"StylizeConfig.size must be at least 16 pixels, got {self.size}")
    if not self.style_layers:
      raise NSTError("StylizeConfig.style_layers is empty")
    for name in ("content_weight", "style_weight", "tv_weight", "range_weight", "laplacian_weight", "edge_weight",
                 "matting_weight", "temporal_weight"):
      value = getattr(self, name)
      if not math.isfinite(value) or value < 0:
        raise NSTError(f"StylizeConfig.{name} must be a finite number >= 0, got {value}")
    for name, value in self.style_layer_weights.items():
      if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise NSTError(f"StylizeConfig.style_layer_weights: {name}={value} must be a finite number >= 0")
    for scale in self.style_scale:
      if not (math.isfinite(scale) and 0.05 <= scale <= 8):
        raise NSTError(f"StylizeConfig.style_scale values must lie in [0.05, 8], got {scale}")
    choices = (("pooling", ("max", "avg")), ("style_loss", STYLE_LOSSES),
               ("style_layer_balance", STYLE_LAYER_BALANCES), ("content_layer_balance", CONTENT_LAYER_BALANCES),
               ("preserve_colors", color.COLOR_MODES), ("style_colors", color.STYLE_COLOR_MODES),
               ("color_method", ("cholesky", "eigen")), ("start_colors", color.START_COLOR_METHODS),
               ("gram_normalization", guidance.GRAM_NORMALIZATIONS))
    for name, allowed in choices:
      if getattr(self, name) not in allowed:
        raise NSTError(f"StylizeConfig.{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
    if self.mask_pooling not in (None, "max", "avg"):
      raise NSTError(f"StylizeConfig.mask_pooling must be 'max' or 'avg', got {self.mask_pooling!r}")
    if self.init_noise is not None and not (math.isfinite(self.init_noise) and 0 <= self.init_noise <= 1):
      raise NSTError(f"StylizeConfig.init_noise must lie in [0, 1], got {self.init_noise}")
    if not (math.isfinite(self.matting_eps) and self.matting_eps > 0):
      raise NSTError(f"StylizeConfig.matting_eps must be a finite number > 0, got {self.matting_eps}")
    if self.depth_regions < 1:
      raise NSTError(f"StylizeConfig.depth_regions must be at least 1, got {self.depth_regions}")
    # Building the optimizer is cheap; doing it here refuses bad settings before weights and features are used.
    make_optimizer(self)


def run_settings(config: StylizeConfig) -> optim.RunSettings:
  """The optimisation loop's settings in `config` (iterations, optimizer, logging, saving, stall test): what the
  engines take instead of the config."""
  return optim.RunSettings(**{field.name: getattr(config, field.name)
                              for field in dataclasses.fields(optim.RunSettings)})


def make_optimizer(config: StylizeConfig):
  """The optimizer of `config` (`optim.RunSettings.make_optimizer`)."""
  return run_settings(config).make_optimizer()


def per_style(values: Sequence, count: int, field: str) -> list:
  """`values` for each of `count` styles: one entry serves them all, otherwise there must be one per style;
  `field` names them in the error."""
  if len(values) == 1:
    return list(values) * count
  if len(values) != count:
    raise NSTError(f"{field} has {len(values)} entries for {count} style image(s); give one or one per style")
  return list(values)


def style_layer_sets(config: StylizeConfig, num_styles: int) -> list[tuple[str, ...]]:
  """Each style's layers: its entry of `style_layer_sets`, or `style_layers` for every style."""
  if config.style_layer_sets:
    return [tuple(s) for s in per_style(config.style_layer_sets, num_styles, "StylizeConfig.style_layer_sets")]
  return [config.style_layers] * num_styles


def uses_style_colors(config: StylizeConfig, *, masked: bool) -> bool:
  """Whether the result takes the styles' chroma statistics (`StylizeConfig.style_colors`; 'auto': on for a style
  loss that leaves the chroma free, `registry.StyleLoss.free_chroma`); `masked`: style masks
  or segmentation are in use (each region has its own style, so one set of statistics does not fit)."""
  if config.style_colors == "off":
    return False
  if config.style_colors == "auto":
    return STYLE_LOSS_TERMS[config.style_loss].free_chroma and config.preserve_colors == "none" and not masked
  if config.preserve_colors != "none" or masked:
    raise NSTError("StylizeConfig.style_colors on gives the whole result the styles' colours: not with "
                   "StylizeConfig.preserve_colors, --style_masks or segmentation maps")
  return True


def start_kind(config: StylizeConfig) -> str:
  """`config.init`, except that 'colors' means 'content' when the content's colours are preserved (the styles'
  colours would be undone, and the luminance-only run optimises a gray image)."""
  return "content" if config.init == "colors" and config.preserve_colors != "none" else config.init


def start_noise(config: StylizeConfig) -> float:
  """Amplitude of the start image's noise: `config.init_noise` when set, otherwise 0.2, and 0.3 when the
  content's colours are preserved (a gray or recoloured start is already close to the style's luminance statistics
  and needs more noise to leave the photo's flat areas; docs/gatys.md, design notes)."""
  if config.init_noise is not None:
    return config.init_noise
  return 0.3 if config.preserve_colors != "none" else 0.2


def blend_weights(config: StylizeConfig, num_styles: int) -> np.ndarray:
  """The styles' blend weights (`style_blend`, default equal), normalised to sum to 1."""
  raw = np.asarray(per_style(config.style_blend or (1.0,), num_styles, "StylizeConfig.style_blend"),
                   np.float64)
  if np.any(raw < 0) or not np.all(np.isfinite(raw)) or raw.sum() <= 0:
    raise NSTError(f"StylizeConfig.style_blend must be non-negative numbers with a positive sum, got {list(raw)}")
  return raw / raw.sum()


def style_layer_weights(config: StylizeConfig, style_layers: Sequence[str]) -> dict[str, float]:
  """Gatys et al.'s w_l: the relative weights of `config.style_layer_weights` (1 for layers not named), normalised
  to sum to 1 over the style layers in use, so the default is w_l = 1/L."""
  raw = {name: float(config.style_layer_weights.get(name, 1.0)) for name in style_layers}
  total = sum(raw.values())
  if total <= 0:
    raise NSTError("StylizeConfig.style_layer_weights gives every style layer in use weight 0")
  return {name: w / total for name, w in raw.items()}



def check_request(config: StylizeConfig, arch: str, *, num_styles: int = 1, has_content: bool = True) -> None:
  """What `__post_init__` cannot check alone: layer names of `arch`, per-style entries for `num_styles` styles,
  and the controls that need a content image. Refuses before any expensive work, naming the field."""
  layer_fields = [("StylizeConfig.style_layers", config.style_layers)]
  if has_content and config.content_weight > 0:
    layer_fields.insert(0, ("StylizeConfig.content_layers", config.content_layers))
  layer_fields += [("StylizeConfig.style_layer_sets", s) for s in config.style_layer_sets]
  for field, names in layer_fields:
    if not names:
      raise NSTError(f"{field} is empty")
    try:
      (vgg.check_layers if field == "StylizeConfig.content_layers" else octaves.check_layers)(arch, names)
    except ValueError as e:
      raise NSTError(f"{field}: {e}") from None
  try:
    octaves.check_layers(arch, list(config.style_layer_weights))
  except ValueError as e:
    raise NSTError(f"StylizeConfig.style_layer_weights: {e}") from None
  if not has_content and config.preserve_colors != "none":
    raise NSTError("StylizeConfig.preserve_colors needs a content image")
  if not has_content and (config.laplacian_weight or config.edge_weight):
    raise NSTError("StylizeConfig.laplacian_weight and StylizeConfig.edge_weight preserve a content image's "
                   "structure; there is none")
  if not has_content and config.matting_weight:
    raise NSTError("StylizeConfig.matting_weight keeps the content's local colour structure; there is no "
                   "content")
  blend_weights(config, num_styles)
  per_style(config.style_scale, num_styles, "StylizeConfig.style_scale")
  style_layer_weights(config, tuple(dict.fromkeys(n for s in style_layer_sets(config, num_styles) for n in s)))
