"""What a photorealistic run optimises: `PhotorealConfig`, the loss weights of its two objectives ("calibrated",
"reference"; the package docstring) and the `StylizeConfig` of each stage."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from nst_jax.errors import NSTError
from nst_jax.io import image_io
from nst_jax.losses import matting
from nst_jax.objective.config import CONTENT_LAYERS, STYLE_LAYERS, StylizeConfig

CAFFE_MEAN_RGB = (123.68 / 256, 116.779 / 256, 103.939 / 256)  # the reference's init, in [0, 1]


OBJECTIVES = ("calibrated", "reference")
INITS = ("colors", "mean", "content", "noise")  # or the path of an image
# Loss weights of each objective (module docstring): the reference code's numbers in its units, and this
# project's numbers for the calibrated terms.
REFERENCE_WEIGHTS = {"content": 5.0, "style": 100.0, "tv": 1e-3, "matting": 1e4}
CALIBRATED_WEIGHTS = {"content": 2.0, "style": 30.0, "tv": 0.0, "matting": 1e4}
CALIBRATED_LAYER_WEIGHTS = {"relu1_1": 1.0, "relu2_1": 0.56, "relu3_1": 0.37, "relu4_1": 0.27, "relu5_1": 0.10}


@dataclasses.dataclass(frozen=True)
class PhotorealConfig:
  """Settings of both stages. Loss weights left at None take the `objective`'s numbers (`loss_weights`):
  "calibrated" (the default) weighs relative errors and the per-pixel matting energy, "reference" is the reference
  code's objective in its own units (module docstring)."""

  size: int = 512
  stage1_iterations: int = 0
  stage2_iterations: int = 150
  stage1_size: int = 0          # > 0: stage 1 is solved at this long side and upsampled (coarse to fine)
  optimizer: str = "lbfgs"
  learning_rate: float | None = None
  optimizer_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  objective: str = "calibrated"
  content_weight: float | None = None
  style_weight: float | None = None
  tv_weight: float | None = None
  range_weight: float = 1e6     # not in the reference: keeps the optimised image inside [0, 1] (module docstring)
  matting_weight: float | None = None
  matting_eps: float = matting.EPSILON
  content_layers: tuple[str, ...] = CONTENT_LAYERS
  style_layers: tuple[str, ...] = STYLE_LAYERS
  style_layer_weights: Mapping[str, float] | None = None  # calibrated only; None: CALIBRATED_LAYER_WEIGHTS
  pooling: str = "max"          # the reference runs the unmodified (max-pooling) VGG19
  init: str = "colors"          # colors | mean (the reference's near-constant start) | content | noise | a path
  smooth: bool = True           # local-affine post-processing
  affine_eps: float = 1e-3
  smooth_radius: int = 15
  smooth_sigma_s: float = 5.0
  smooth_sigma_r: float = 0.01
  # A 5x5 guided filter after the smoothing: the bilateral filtering of the affine maps leaves them slightly off at
  # the content's edges, which this removes.
  refine: bool = True
  refine_radius: int = 2
  refine_eps: float = 1e-4
  # Before the post-processing, each region's YIQ chroma mean and std from its style region
  # (`color.match_region_chroma`). The optimisation spreads chroma along the green-magenta axis in flat,
  # low-saturation regions (lilac and green patches that neither photo has; the start is on the target's palette,
  # docs/photoreal.md §8); this takes each region back to its target's chroma, and a gray target gives a gray result.
  region_chroma: bool = True
  # Before that, each region's chroma refitted as a quadratic function of the content's colour
  # (`color.fit_region_chroma`): one content colour, one result chroma per region. It removes the slowly varying
  # patches the optimisation leaves in flat areas, which keep the region's mean and std and so survive
  # `region_chroma` (docs/photoreal.md §8).
  chroma_fit: bool = True
  seed: int = 0
  log_every: int = 10
  stall_rtol: float | None = StylizeConfig.stall_rtol  # L-BFGS early stop (`stalled`)

  def __post_init__(self) -> None:
    if self.objective not in OBJECTIVES:
      raise NSTError(f"PhotorealConfig.objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
    if self.stage1_size < 0 or 0 < self.stage1_size < 16:
      raise NSTError(f"PhotorealConfig.stage1_size must be 0 (stage 1 at PhotorealConfig.size) or at least 16, "
                     f"got {self.stage1_size}")
    if self.style_layer_weights is not None and self.objective != "calibrated":
      raise NSTError("PhotorealConfig.style_layer_weights belong to the calibrated objective "
                     "(PhotorealConfig.objective); the reference weighs layers equally")
    for field in ("stage1_iterations", "stage2_iterations"):
      if getattr(self, field) < 0:
        raise NSTError(f"PhotorealConfig.{field} must be >= 0, got {getattr(self, field)}")
    if self.stage1_iterations + self.stage2_iterations < 1:
      raise NSTError("PhotorealConfig.stage1_iterations and PhotorealConfig.stage2_iterations are both 0: nothing "
                     "to optimise")
    weights = loss_weights(self)
    for field, value in (*weights.items(), ("range", self.range_weight)):
      if not (math.isfinite(value) and value >= 0):
        raise NSTError(f"PhotorealConfig.{field}_weight must be a finite number >= 0, got {value}")
    for field in ("matting_eps", "affine_eps", "smooth_sigma_s", "smooth_sigma_r", "refine_eps"):
      if not (math.isfinite(getattr(self, field)) and getattr(self, field) > 0):
        raise NSTError(f"PhotorealConfig.{field} must be a finite number > 0, got {getattr(self, field)}")
    for field in ("smooth_radius", "refine_radius"):
      if getattr(self, field) < 1:
        raise NSTError(f"PhotorealConfig.{field} must be at least 1, got {getattr(self, field)}")
    if self.size < 16:
      raise NSTError(f"PhotorealConfig.size must be at least 16 pixels, got {self.size}")
    stylize_config(self, stage=1 if self.stage1_iterations else 2, shape=(self.size, self.size),
                   input_scale=1.0)  # layers, pooling, optimizer


def loss_weights(config: PhotorealConfig) -> dict[str, float]:
  """{content, style, tv, matting}: the given weights, the others from the objective's defaults."""
  defaults = CALIBRATED_WEIGHTS if config.objective == "calibrated" else REFERENCE_WEIGHTS
  given = {"content": config.content_weight, "style": config.style_weight, "tv": config.tv_weight,
           "matting": config.matting_weight}
  return {name: float(defaults[name] if value is None else value) for name, value in given.items()}


def stylize_config(config: PhotorealConfig, *, stage: int, shape: tuple[int, int],
                   input_scale: float) -> StylizeConfig:
  """The `StylizeConfig` of stage 1 or 2 at the image `shape` of that stage (module docstring): the reference's
  objective in nst_jax's units, or the calibrated one (relative content and style errors, per-pixel matting)."""
  h, w = shape
  weights = loss_weights(config)
  common = dict(
      size=max(h, w), iterations=config.stage1_iterations if stage == 1 else config.stage2_iterations,
      optimizer=config.optimizer, learning_rate=config.learning_rate, optimizer_options=config.optimizer_options,
      range_weight=config.range_weight, matting_eps=config.matting_eps, gram_normalization="channels_mass",
      content_layers=config.content_layers, style_layers=config.style_layers, pooling=config.pooling,
      mask_pooling="avg", init="content" if config.init in ("mean", "colors") else config.init, init_noise=0.0,
      seed=config.seed, log_every=config.log_every, stall_rtol=config.stall_rtol)
  if config.objective == "reference":
    return StylizeConfig(
        content_weight=weights["content"] * len(config.content_layers),
        style_weight=weights["style"] * 4.0 * len(config.style_layers),
        tv_weight=weights["tv"] * 0.5 * input_scale**2 * 3 * (h - 1) * (w - 1),
        matting_weight=weights["matting"] if stage == 2 else 0.0, **common)
  layer_weights = CALIBRATED_LAYER_WEIGHTS if config.style_layer_weights is None else config.style_layer_weights
  return StylizeConfig(
      content_weight=weights["content"], style_weight=weights["style"], tv_weight=weights["tv"],
      matting_weight=weights["matting"] / (h * w) if stage == 2 else 0.0,
      content_layer_balance="target", style_layer_balance="target",
      style_layer_weights={name: layer_weights.get(name, 1.0) for name in config.style_layers}, **common)


def stage_shapes(config: PhotorealConfig, content_shape: tuple[int, ...]) -> tuple[tuple[int, int], tuple[int, int]]:
  """(stage 1's, stage 2's) image shapes: `size` on the long side, stage 1 at `stage1_size` when that is set."""
  final = image_io.long_side_shape(content_shape, config.size)
  first = image_io.long_side_shape(content_shape, config.stage1_size) if config.stage1_size else final
  return first, final


# The reference's size and iterations (its two stages of 1000 L-BFGS iterations at 700 px), with this project's
# objective and start; add objective="reference", init="mean" for the reference's own.
PAPER_PRESET = PhotorealConfig(size=700, stage1_iterations=1000, stage2_iterations=1000)
