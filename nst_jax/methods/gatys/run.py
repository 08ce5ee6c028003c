"""A Gatys et al. run from its settings: the config resolved into its plan once, the whole-image problem built from
the plan, optimised, and the result's colours finished."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from nst_jax.engines.optimize import StylizeResult, optimize_image
from nst_jax.methods.gatys.problem import Problem, problem_from_plan
from nst_jax.objective.config import StylizeConfig
from nst_jax.objective.images import as_style_list, finish_colors
from nst_jax.objective.plan import resolve_plan
from nst_jax.weights.format import VGGWeights


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
  result.image = finish_colors(result.image, content=problem.content, styles=as_style_list(styles),
                               plan=problem.plan)
  return result


def build_problem(*, content: np.ndarray | None, styles: Sequence[np.ndarray] | np.ndarray, weights: VGGWeights,
                  config: StylizeConfig, style_masks: Sequence[np.ndarray] | None = None,
                  depth: np.ndarray | None = None, hed_weights: VGGWeights | None = None,
                  synthesis_shape: tuple[int, int] | None = None, content_seg: np.ndarray | None = None,
                  style_seg: np.ndarray | None = None) -> Problem:
  """Resolves `config` into its plan (`resolve_plan`, which validates the request) and builds the whole-image
  problem from it (`problem_from_plan`); see `stylize` for the arguments."""
  styles = as_style_list(styles)
  plan = resolve_plan(config, arch=weights.arch, num_styles=len(styles), has_content=content is not None,
                      style_masks=style_masks is not None, depth=depth is not None,
                      segmented=content_seg is not None or style_seg is not None)
  return problem_from_plan(plan, content=content, styles=styles, weights=weights, style_masks=style_masks,
                           depth=depth, hed_weights=hed_weights, synthesis_shape=synthesis_shape,
                           content_seg=content_seg, style_seg=style_seg)
