"""Gatys et al. (2016, 2017): style transfer and texture synthesis by optimising the image.

  run       a run from its `StylizeConfig`, resolved once into a plan and run settings:
            `stylize` (the whole image), `stylize_highres` (tiles over a coarse-to-fine pyramid, resumable),
            `build_problem` (the whole-image problem of a config)
  problem   `problem_from_plan`: the whole-image `Problem` of a resolved plan (targets, loss terms, start)

The tiled problem of the same plan is `nst_jax.highres.scale_problem`; both run through
`nst_jax.engines.optimize`.
"""

from nst_jax.methods.gatys.problem import Problem, problem_from_plan
from nst_jax.methods.gatys.run import build_problem, stylize, stylize_highres

__all__ = ["Problem", "build_problem", "problem_from_plan", "stylize", "stylize_highres"]
