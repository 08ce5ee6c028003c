"""Gatys et al. (2016, 2017): style transfer and texture synthesis by optimising the image.

  stylize, build_problem   (run) a run from a `StylizeConfig`: resolve the plan, build, optimise, finish colours
  Problem, problem_from_plan   (problem) the whole-image problem of a resolved plan: targets, loss terms, start

The tiled engine for large images is `nst_jax.highres`; it builds its loss from the same plan.
"""

from nst_jax.methods.gatys.problem import Problem, problem_from_plan
from nst_jax.methods.gatys.run import build_problem, stylize

__all__ = ["Problem", "build_problem", "problem_from_plan", "stylize"]
