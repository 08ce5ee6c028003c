"""The two optimisation stages of a photorealistic run, whole-image or tiled, their start images, and the
post-processing of the result."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from jax.sharding import Mesh

from nst_jax.engines.optimize import StylizeResult, optimize_image
from nst_jax.errors import NSTError
from nst_jax.highres import distributed, highres_config, memory, pyramid, scale_problem, tiling
from nst_jax.io import image_io
from nst_jax.losses import color, segmentation
from nst_jax.methods import gatys
from nst_jax.methods.photoreal.objective import (CAFFE_MEAN_RGB, PhotorealConfig, loss_weights, stage_shapes,
                                                 stylize_config)
from nst_jax.methods.photoreal.smoothing import guided_filter, smooth_local_affine
from nst_jax.objective import images as objective_images
from nst_jax.objective.config import run_settings
from nst_jax.objective.plan import resolve_plan
from nst_jax.weights.format import VGGWeights


@dataclasses.dataclass
class PhotorealResult:
  """The final image, each stage's result and the image before the post-processing."""

  image: np.ndarray                       # final (post-processed if `smooth`)
  stage1: StylizeResult | None            # None when stage1_iterations == 0 (the start goes to stage 2)
  stage2: StylizeResult | None            # None when stage2_iterations == 0
  unsmoothed: np.ndarray                  # the last stage's optimised image
  grid: tiling.TileGrid | None = None     # the tiles, when run through the high-resolution engine


def check_tiled_request(config: PhotorealConfig, hr: highres_config.HighresConfig, *, arch: str = "vgg19") -> None:
  """What the tiled engine needs of a photoreal run: one scale, no checkpoints, and settings it supports; `arch`
  names the network whose layer names are checked (every VGG16 layer name is also a VGG19 one)."""
  for field in ("start_size", "scale_iterations", "checkpoint_dir", "checkpoint_every"):
    if getattr(hr, field):
      raise NSTError(f"photoreal runs both stages at PhotorealConfig.size (tiled, without a pyramid or checkpoints); "
                     f"HighresConfig.{field} does not apply")
  stage_config = stylize_config(config, stage=2 if config.stage2_iterations else 1,
                                shape=(config.size, config.size), input_scale=1.0)
  highres_config.check_highres_request(hr, resolve_plan(stage_config, arch=arch))


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
  """Photorealistic style transfer: both stages and the post-processing.

  Args:
    content, style: (H, W, 3) images in [0, 1].
    config: both stages' settings; each stage's objective is `stylize_config`'s `StylizeConfig`, resolved into its
      plan and run settings here.
    content_seg, style_seg: colour-coded segmentation maps, any size (both or neither).
    on_stage: `(stage, image)` with each stage's result (to save intermediates).
    hr: with it, each stage is optimised through the tiled engine (`scale_problem.build_scale_problem` and
      `pyramid.optimize_scale`, over `mesh`, default every device) at `config.size`, in tiles of `hr.tile_size` px
      (0: the largest that fits `hr.max_memory_gb`); without it, whole (`gatys.build_problem`).

  Returns:
    The `PhotorealResult`.
  """
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
      result = optimize_image(problem.terms_fn, problem.inputs, x0, run=run_settings(cfg), progress=progress,
                              label=f"stage {stage} {cfg.optimizer} ")
    else:
      result = pyramid.optimize_scale(tiled, x0, run=run_settings(cfg), mesh=mesh, progress=progress,
                                      label=f"stage {stage} {cfg.optimizer}, {grid.num_tiles} tile(s) ")
    results[stage] = result
    image = result.image
    if on_stage:
      on_stage(stage, image)
  if image.shape[:2] != shape:  # no stage 2: bring stage 1's result to the output size
    image = image_io.resize(image, *shape)
    guide = image_io.resize(content, *shape)
  if config.chroma_fit or config.region_chroma:
    seg = segmentation.match(content_seg, style_seg, content_shape=shape, style_shape=style.shape[:2])
  if config.chroma_fit:
    image = np.clip(color.fit_region_chroma(image, np.asarray(guide), content_masks=seg.content), 0, 1)
  if config.region_chroma:
    image = np.clip(color.match_region_chroma(image, style, content_masks=seg.content, style_masks=seg.style), 0, 1)
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
