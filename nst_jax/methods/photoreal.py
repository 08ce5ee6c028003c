"""Photorealistic style transfer (Luan et al. 2017, "Deep Photo Style Transfer").

Two optimisations of the same objective (`gatys.build_problem`, or the tiled engine of `nst_jax.highres` with a
`HighresConfig`; the matting term is one more loss term, `StylizeConfig.matting_weight`): 1. segmented style
transfer without the photorealism term (off by default, `stage1_iterations=0`), optionally at `stage1_size` and
upsampled; 2. the same plus λ · sum_c p_cᵀ L p_c (`nst_jax.losses.matting`, L the content's matting Laplacian).
Then the paper's post-processing: `smooth_local_affine` (a per-pixel affine colour map content -> output, its
coefficients joint-bilaterally filtered with the content as guide) and by default a 5x5 `guided_filter`.

Objectives (`PhotorealConfig.objective`; `loss_weights` fills the weights left at None): "calibrated" (the
default) makes every term independent of the scale of the network's activations (relative content and style
errors per layer, `CALIBRATED_LAYER_WEIGHTS`, per-pixel matting energy, no TV); "reference" is the reference
code's objective mapped onto nst_jax's normalised losses (`stylize_config`). `range_weight` keeps the optimised
image inside [0, 1], where the reference clips only when saving.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from nst_jax.engines.optimize import StylizeResult, optimize_image
from nst_jax.errors import NSTError
from nst_jax.highres import distributed, highres_config, memory, pyramid, scale_problem, tiling
from nst_jax.io import image_io
from nst_jax.losses import color, matting, segmentation
from nst_jax.methods import gatys
from nst_jax.objective import images as objective_images
from nst_jax.objective.config import CONTENT_LAYERS, STYLE_LAYERS, StylizeConfig
from nst_jax.objective.plan import resolve_plan
from nst_jax.weights.format import VGGWeights

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
  seed: int = 0
  log_every: int = 10
  stall_rtol: float | None = StylizeConfig.stall_rtol  # L-BFGS early stop (`stalled`)

  def __post_init__(self) -> None:
    if self.objective not in OBJECTIVES:
      raise NSTError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
    if self.stage1_size < 0 or 0 < self.stage1_size < 16:
      raise NSTError(f"--stage1_size must be 0 (stage 1 at --size) or at least 16, got {self.stage1_size}")
    if self.style_layer_weights is not None and self.objective != "calibrated":
      raise NSTError("per-layer style weights belong to the calibrated objective; the reference weighs layers equally")
    for flag, value in (("--stage1_iterations", self.stage1_iterations),
                        ("--stage2_iterations", self.stage2_iterations)):
      if value < 0:
        raise NSTError(f"{flag} must be >= 0, got {value}")
    if self.stage1_iterations + self.stage2_iterations < 1:
      raise NSTError("--stage1_iterations and --stage2_iterations are both 0: nothing to optimise")
    weights = loss_weights(self)
    for flag, value in (("--content_weight", weights["content"]), ("--style_weight", weights["style"]),
                        ("--tv_weight", weights["tv"]), ("--range_weight", self.range_weight),
                        ("--matting_weight", weights["matting"])):
      if not (math.isfinite(value) and value >= 0):
        raise NSTError(f"{flag} must be a finite number >= 0, got {value}")
    for flag, value in (("--matting_eps", self.matting_eps), ("--affine_eps", self.affine_eps),
                        ("--smooth_sigma_s", self.smooth_sigma_s),
                        ("--smooth_sigma_r", self.smooth_sigma_r), ("--refine_eps", self.refine_eps)):
      if not (math.isfinite(value) and value > 0):
        raise NSTError(f"{flag} must be a finite number > 0, got {value}")
    for flag, value in (("--smooth_radius", self.smooth_radius), ("--refine_radius", self.refine_radius)):
      if value < 1:
        raise NSTError(f"{flag} must be at least 1, got {value}")
    if self.size < 16:
      raise NSTError(f"--size must be at least 16 pixels, got {self.size}")
    stylize_config(self, stage=1 if self.stage1_iterations else 2, shape=(self.size, self.size),
                   input_scale=1.0)  # layers, pooling, optimizer


def loss_weights(config: PhotorealConfig) -> dict[str, float]:
  """{content, style, tv, matting}: the given weights, the others from the objective's defaults."""
  defaults = CALIBRATED_WEIGHTS if config.objective == "calibrated" else REFERENCE_WEIGHTS
  given = {"content": config.content_weight, "style": config.style_weight, "tv": config.tv_weight,
           "matting": config.matting_weight}
  return {name: float(defaults[name] if value is None else value) for name, value in given.items()}


@dataclasses.dataclass
class PhotorealResult:
  image: np.ndarray                       # final (post-processed if `smooth`)
  stage1: StylizeResult | None            # None when stage1_iterations == 0 (the start goes to stage 2)
  stage2: StylizeResult | None            # None when stage2_iterations == 0
  unsmoothed: np.ndarray                  # the last stage's optimised image
  grid: tiling.TileGrid | None = None     # the tiles, when run through the high-resolution engine


def check_tiled_request(config: PhotorealConfig, hr: highres_config.HighresConfig, *, arch: str = "vgg19") -> None:
  """What the tiled engine needs of a photoreal run: one scale, no checkpoints, and settings it supports; `arch`
  names the network whose layer names are checked (every VGG16 layer name is also a VGG19 one)."""
  for flag, value in (("--start_size", hr.start_size), ("--scale_iterations", hr.scale_iterations),
                      ("--checkpoint_dir", hr.checkpoint_dir), ("--checkpoint_every", hr.checkpoint_every)):
    if value:
      raise NSTError(f"photoreal runs both stages at --size (tiled, without a pyramid or checkpoints); {flag} "
                     f"does not apply")
  stage_config = stylize_config(config, stage=2 if config.stage2_iterations else 1,
                                shape=(config.size, config.size), input_scale=1.0)
  highres_config.check_highres_request(hr, resolve_plan(stage_config, arch=arch))


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


def colors_init(*, content: np.ndarray, style: np.ndarray, shape: tuple[int, int], content_seg: np.ndarray | None,
                style_seg: np.ndarray | None) -> np.ndarray:
  """The content at `shape` with each segmentation region's colour mean and covariance moved to its style region's
  (`color.match_region_colors`; the whole image without maps), clipped to [0, 1]: already photorealistic (an
  affine colour map per region) and in the style's palette, so the optimisation only has to add texture."""
  content = image_io.resize(content, *shape)
  style = image_io.resize_long_side(style, max(shape))  # as `gatys.build_problem` resizes it
  seg = segmentation.match(content_seg, style_seg, content_shape=shape, style_shape=style.shape[:2])
  matched = color.match_region_colors(content, style, content_masks=seg.content, style_masks=seg.style)
  return np.clip(matched, 0.0, 1.0)


def initial_image(shape: tuple[int, int], *, seed: int) -> np.ndarray:
  """The reference's start: N(0, 1e-4) noise in network units around the mean pixel, i.e. nearly constant."""
  noise = np.random.default_rng(seed).normal(0.0, 1e-4 / 256, (*shape, 3))
  return (np.asarray(CAFFE_MEAN_RGB) + noise).astype(np.float32)


def photoreal(*, content: np.ndarray, style: np.ndarray, weights: VGGWeights, config: PhotorealConfig,
              content_seg: np.ndarray | None = None, style_seg: np.ndarray | None = None,
              progress: bool = True, on_stage: Callable[[int, np.ndarray], None] | None = None,
              hr: highres_config.HighresConfig | None = None, mesh: Mesh | None = None) -> PhotorealResult:
  """Both stages and the post-processing; `content`/`style` (H, W, 3) in [0, 1], maps any size (both or neither).
  `on_stage(stage, image)` sees each stage's result (to save intermediates). With `hr`, each stage is optimised
  through the tiled engine (`scale_problem.build_scale_problem` + `pyramid.optimize_scale`, over `mesh`, default
  every device) at `config.size`, in tiles of `hr.tile_size` px (0: the largest that fits `hr.max_memory_gb`)."""
  if hr is not None:
    check_tiled_request(config, hr, arch=weights.arch)
  shapes = stage_shapes(config, content.shape)
  shape = shapes[1]
  grid = tile = None
  if hr is not None:
    mesh = mesh or distributed.make_mesh()
    tile = hr.tile_size or _auto_tile(config, shape, hr, mesh, weights=weights,
                                      regions=scale_problem.region_count(content_seg, style_seg))
  guide = None
  image = None
  results = {}
  for stage in (1, 2):
    if (config.stage1_iterations, config.stage2_iterations)[stage - 1] == 0:
      continue
    stage_shape = shapes[stage - 1]
    cfg = stylize_config(config, stage=stage, shape=stage_shape, input_scale=weights.preprocessing.input_scale)
    if hr is None:
      problem = gatys.build_problem(content=content, styles=[style], weights=weights, config=cfg,
                                    content_seg=content_seg, style_seg=style_seg)
      guide, start = problem.content, problem.x0
    else:
      plan = resolve_plan(cfg, arch=weights.arch, segmented=content_seg is not None or style_seg is not None)
      tiled = scale_problem.build_scale_problem(content=content, styles=[style], weights=weights, plan=plan,
                                                shape=stage_shape, tile=tile, hr=hr, mesh=mesh,
                                                content_seg=content_seg, style_seg=style_seg)
      guide, grid = tiled.content, tiled.grid
      start = objective_images.initial_image(cfg.init, content=guide, styles=[style], seed=cfg.seed, shape=stage_shape)
    if image is not None:  # stage 2 after stage 1
      x0 = image_io.resize(image, *stage_shape) if image.shape[:2] != stage_shape else image
    elif config.init == "mean":
      x0 = initial_image(stage_shape, seed=config.seed)
    elif config.init == "colors":
      x0 = colors_init(content=content, style=style, shape=stage_shape, content_seg=content_seg, style_seg=style_seg)
    else:
      x0 = start
    if hr is None:
      result = optimize_image(problem.terms_fn, problem.inputs, x0, config=cfg, progress=progress,
                              label=f"stage {stage} {cfg.optimizer} ")
    else:
      result = pyramid.optimize_scale(tiled, x0, config=cfg, mesh=mesh, progress=progress,
                                      label=f"stage {stage} {cfg.optimizer}, {grid.num_tiles} tile(s) ")
    results[stage] = result
    image = result.image
    if on_stage:
      on_stage(stage, image)
  if image.shape[:2] != shape:  # no stage 2: bring stage 1's result to the output size
    image = image_io.resize(image, *shape)
    guide = image_io.resize(content, *shape)
  final = image
  if config.smooth:
    final = smooth_local_affine(output=image, content=guide, eps=config.affine_eps,
                                radius=config.smooth_radius, sigma_s=config.smooth_sigma_s,
                                sigma_r=config.smooth_sigma_r)
  if config.refine:
    final = guided_filter(guide=guide, source=final, radius=config.refine_radius, eps=config.refine_eps)
  return PhotorealResult(image=np.clip(final, 0.0, 1.0).astype(np.float32), stage1=results.get(1),
                         stage2=results.get(2), unsmoothed=image, grid=grid)


def _auto_tile(config: PhotorealConfig, shape: tuple[int, int], hr: highres_config.HighresConfig, mesh: Mesh, *,
               weights: VGGWeights, regions: int) -> int:
  """The tile size of both stages: the largest whose predicted peak (stage 2's, with the matting term) fits."""
  layers = tuple(dict.fromkeys(config.content_layers + config.style_layers))
  terms = loss_weights(config)
  return memory.auto_tile_size(shape, budget_bytes=memory.budget_bytes(hr.max_memory_gb), arch=weights.arch,
                               layers=layers, content_layers=config.content_layers if terms["content"] > 0 else (),
                               halo=hr.tile_halo, overlap=hr.tile_overlap, precision=hr.precision,
                               batch=hr.tile_batch, devices=int(mesh.devices.size), regions=regions,
                               matting=terms["matting"] > 0 and config.stage2_iterations > 0)


# ---------------------------------------------------------------------------------------------------------------
# Post-processing


def window_counts(height: int, width: int, radius: int) -> np.ndarray:
  """(H, W) number of in-image pixels in the (2r+1)² window around each pixel: rows in range times columns in
  range, exact integers."""
  def in_range(n: int) -> np.ndarray:
    i = np.arange(n)
    return np.minimum(i + radius, n - 1) - np.maximum(i - radius, 0) + 1
  return np.outer(in_range(height), in_range(width)).astype(np.float32)


def _box_mean(x: jax.Array, radius: int) -> jax.Array:
  """Mean over the in-image part of the (2r+1)² window around each pixel of (H, W, ...)."""
  size = 2 * radius + 1
  pads = ((radius, radius), (radius, radius)) + ((0, 0),) * (x.ndim - 2)
  dims = (size, size) + (1,) * (x.ndim - 2)
  total = jax.lax.reduce_window(x, jnp.zeros((), x.dtype), jax.lax.add, dims, (1,) * x.ndim, pads)
  # The count depends on the shape alone: computed in NumPy it is a trace-time constant. As a window sum of ones
  # inside jit, XLA constant-folded it at every compilation (seconds at radius 8, with a slow-operation alarm).
  count = window_counts(x.shape[0], x.shape[1], radius)
  return total / jnp.asarray(count.reshape(count.shape + (1,) * (x.ndim - 2)), x.dtype)


@functools.partial(jax.jit, static_argnames=("radius",))
def local_affine(*, output: jax.Array, content: jax.Array, eps: float = 1e-3,
                 radius: int = 1) -> tuple[jax.Array, jax.Array]:
  """Per-pixel affine colour maps output ≈ A_k content + b_k fitted by ridge regression over the window around
  each pixel k (3x3 for radius 1): A_k = cov_k(O, I) (Σ_k + eps/|w| · 1)⁻¹, b_k = Ō_k − A_k μ_k, i.e. the
  minimiser of sum_j |A I_j + b − O_j|² + eps |A|² over the window (in-image pixels only at the border).
  Returns A (H, W, 3, 3) and b (H, W, 3)."""
  output = jnp.asarray(output, jnp.float32)
  content = jnp.asarray(content, jnp.float32)
  n = float((2 * radius + 1) ** 2)
  mu = _box_mean(content, radius)
  mean_out = _box_mean(output, radius)
  sigma = _box_mean(content[..., :, None] * content[..., None, :], radius) - mu[..., :, None] * mu[..., None, :]
  cov = _box_mean(output[..., :, None] * content[..., None, :], radius) - mean_out[..., :, None] * mu[..., None, :]
  # eps/n against a covariance (a mean over the window) is eps against the window's sum of squares.
  a = jnp.linalg.solve(sigma + eps / n * jnp.eye(3), jnp.swapaxes(cov, -1, -2))  # (Σ + ε)⁻¹ covᵀ, Σ symmetric
  a = jnp.swapaxes(a, -1, -2)
  b = mean_out - jnp.einsum("hwij,hwj->hwi", a, mu)
  return a, b


@jax.jit
def _joint_bilateral(values: jax.Array, guide: jax.Array, spatial: jax.Array, sigma_r: float) -> jax.Array:
  """Normalised joint bilateral filter of (H, W, K) values with an (H, W, 3) guide and a (2r+1)² spatial kernel;
  taps outside the image are skipped (weight 0)."""
  size = spatial.shape[0]
  r = size // 2
  h, w = values.shape[:2]
  pad = ((r, r), (r, r), (0, 0))
  vals = jnp.pad(values, pad)
  gd = jnp.pad(guide, pad)
  inside = jnp.pad(jnp.ones((h, w), values.dtype), r)

  def body(t, carry):
    acc, norm = carry
    dy, dx = t // size, t % size
    v = jax.lax.dynamic_slice(vals, (dy, dx, 0), (h, w, values.shape[2]))
    g = jax.lax.dynamic_slice(gd, (dy, dx, 0), (h, w, 3))
    m = jax.lax.dynamic_slice(inside, (dy, dx), (h, w))
    weight = spatial[dy, dx] * m * jnp.exp(-jnp.sum(jnp.square(g - guide), -1) / (2 * sigma_r**2))
    return acc + weight[..., None] * v, norm + weight

  acc, norm = jax.lax.fori_loop(0, size * size, body, (jnp.zeros_like(values), jnp.zeros((h, w), values.dtype)))
  return acc / norm[..., None]  # the centre tap has weight 1, so norm >= 1


def smooth_local_affine(*, output: np.ndarray, content: np.ndarray, eps: float = 1e-3, radius: int = 15,
                        sigma_s: float = 5.0, sigma_r: float = 0.01) -> np.ndarray:
  """Luan et al.'s final post-processing: 3x3-window affine maps content -> output (`local_affine`, ridge `eps`),
  joint-bilaterally filtered (content as guide, window radius `radius`, Gaussian σ_s pixels in space and σ_r in
  RGB), applied to the content. An output that is an affine colour transform of the content is reproduced."""
  offsets = np.arange(-radius, radius + 1)
  spatial = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma_s**2)).astype(np.float32)
  return np.asarray(_smooth_affine(jnp.asarray(output, jnp.float32), jnp.asarray(content, jnp.float32),
                                   jnp.asarray(spatial), eps, float(sigma_r)), np.float32)


@jax.jit
def _smooth_affine(output: jax.Array, content: jax.Array, spatial: jax.Array, eps: float,
                   sigma_r: float) -> jax.Array:
  a, b = local_affine(output=output, content=content, eps=eps)
  h, w = content.shape[:2]
  coefficients = jnp.concatenate([a.reshape(h, w, 9), b], axis=-1)
  smooth = _joint_bilateral(coefficients, content, spatial, sigma_r)
  a, b = smooth[..., :9].reshape(h, w, 3, 3), smooth[..., 9:]
  return jnp.einsum("hwij,hwj->hwi", a, content) + b


def guided_filter(*, guide: np.ndarray, source: np.ndarray, radius: int = 8, eps: float = 0.01) -> np.ndarray:
  """He et al.'s colour-guided filter of an (H, W, 3) source: per-window ridge affine maps guide -> source
  (regulariser eps against the window covariance), averaged over the windows covering each pixel."""
  return np.asarray(_guided_filter(jnp.asarray(guide, jnp.float32), jnp.asarray(source, jnp.float32), eps,
                                   radius=radius), np.float32)


@functools.partial(jax.jit, static_argnames=("radius",))
def _guided_filter(guide: jax.Array, source: jax.Array, eps: float, *, radius: int) -> jax.Array:
  n = float((2 * radius + 1) ** 2)
  a, b = local_affine(output=source, content=guide, eps=eps * n, radius=radius)
  a, b = _box_mean(a, radius), _box_mean(b, radius)
  return jnp.einsum("hwij,hwj->hwi", a, guide) + b
