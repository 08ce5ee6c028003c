"""A Gatys et al. run from its settings: the config resolved once into its plan and run settings, then optimised
whole (`problem_from_plan`) or in tiles over a coarse-to-fine pyramid (`nst_jax.highres`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from jax.sharding import Mesh

from nst_jax.engines.optimize import StylizeResult, optimize_image
from nst_jax.highres import highres_config, pyramid
from nst_jax.methods.gatys.problem import Problem, problem_from_plan
from nst_jax.objective.config import StylizeConfig, run_settings
from nst_jax.objective.images import as_style_list, finish_colors
from nst_jax.objective.plan import resolve_plan
from nst_jax.weights.format import VGGWeights


def stylize(*, content: np.ndarray | None, styles: Sequence[np.ndarray] | np.ndarray, weights: VGGWeights,
            config: StylizeConfig, style_masks: Sequence[np.ndarray] | None = None,
            depth: np.ndarray | None = None, hed_weights: VGGWeights | None = None,
            synthesis_shape: tuple[int, int] | None = None,
            on_intermediate: Callable[[int, np.ndarray], None] | None = None,
            progress: bool = True, content_seg: np.ndarray | None = None,
            style_seg: np.ndarray | None = None, guides: Mapping[str, Any] | None = None,
            start: Callable[[np.ndarray], np.ndarray] | None = None) -> StylizeResult:
  """Style transfer (or, with `content=None`, texture synthesis) by optimising the image.

  Args:
    content: (H, W, 3) in [0, 1], resized to `config.size` on its long side; None: texture synthesis.
    styles: one (H, W, 3) image in [0, 1] or a sequence of them, each resized to `config.size` times its
      `style_scale` (and a depth bin's scale).
    weights: the VGG weights; `hed_weights` serve the edge term when `weights` lack HED side outputs.
    config: the run's settings, resolved once into its plan (`nst_jax.objective.plan.resolve_plan`).
    style_masks: one (H, W) mask per style, any size, in content space; `depth` likewise ((H, W), brighter =
      nearer).
    synthesis_shape: the output's shape without content (default: the first style's aspect at `config.size`).
    on_intermediate: `(iteration, image)` every `config.save_every` iterations.
    progress: progress lines on stderr.
    content_seg, style_seg: Luan et al.'s segmentation maps (both or neither; `problem_from_plan`).
    guides: per-image arrays of the image terms that take them (`problem_from_plan`; e.g. a video frame's warped
      predecessors for `StylizeConfig.temporal_weight`).
    start: maps the plan's start image (`config.init`, at the output's size) to the one the optimisation starts
      from, e.g. the previous frame's result warped into this one, with the default start where the warp fails.

  Returns:
    The `StylizeResult`, its image with the plan's colour step applied (`objective.images.finish_colors`).
  """
  problem = build_problem(content=content, styles=styles, weights=weights, config=config,
                          style_masks=style_masks, depth=depth, hed_weights=hed_weights,
                          synthesis_shape=synthesis_shape, content_seg=content_seg, style_seg=style_seg,
                          guides=guides)
  x0 = problem.x0 if start is None else np.asarray(start(problem.x0), np.float32)
  result = optimize_image(problem.terms_fn, problem.inputs, x0, run=run_settings(config),
                          on_intermediate=on_intermediate, progress=progress)
  result.image = finish_colors(result.image, content=problem.content, styles=as_style_list(styles),
                               plan=problem.plan)
  return result


def build_problem(*, content: np.ndarray | None, styles: Sequence[np.ndarray] | np.ndarray, weights: VGGWeights,
                  config: StylizeConfig, style_masks: Sequence[np.ndarray] | None = None,
                  depth: np.ndarray | None = None, hed_weights: VGGWeights | None = None,
                  synthesis_shape: tuple[int, int] | None = None, content_seg: np.ndarray | None = None,
                  style_seg: np.ndarray | None = None, guides: Mapping[str, Any] | None = None) -> Problem:
  """The whole-image problem of `config`: its plan (`resolve_plan`, which checks the request) built by
  `problem_from_plan`. The arguments are `stylize`'s."""
  styles = as_style_list(styles)
  plan = resolve_plan(config, arch=weights.arch, num_styles=len(styles), has_content=content is not None,
                      style_masks=style_masks is not None, depth=depth is not None,
                      segmented=content_seg is not None or style_seg is not None)
  return problem_from_plan(plan, content=content, styles=styles, weights=weights, style_masks=style_masks,
                           depth=depth, hed_weights=hed_weights, synthesis_shape=synthesis_shape,
                           content_seg=content_seg, style_seg=style_seg, guides=guides)


def stylize_highres(*, content: np.ndarray | None, styles: Sequence[np.ndarray] | np.ndarray, weights: VGGWeights,
                    config: StylizeConfig, hr: highres_config.HighresConfig, mesh: Mesh | None = None,
                    synthesis_shape: tuple[int, int] | None = None, progress: bool = True,
                    on_scale_done: Callable[[int, np.ndarray], None] | None = None,
                    content_seg: np.ndarray | None = None, style_seg: np.ndarray | None = None
                    ) -> tuple[StylizeResult, list[pyramid.ScaleReport]]:
  """High-resolution style transfer: `config` resolved once into its plan and run settings, then the pyramid of
  tiled optimisations (`nst_jax.highres.pyramid.run_pyramid`, whose arguments these are), resumable from
  `hr.checkpoint_dir`.

  Returns:
    The result and one `pyramid.ScaleReport` per scale run.
  """
  styles = as_style_list(styles)
  plan = resolve_plan(config, arch=weights.arch, num_styles=len(styles), has_content=content is not None,
                      segmented=content_seg is not None)
  return pyramid.run_pyramid(plan, run_settings(config), hr=hr, content=content, styles=styles, weights=weights,
                             mesh=mesh, synthesis_shape=synthesis_shape, progress=progress,
                             on_scale_done=on_scale_done, content_seg=content_seg, style_seg=style_seg)
