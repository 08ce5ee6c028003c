"""Stylised video: a clip frame by frame, stable in time.

  gatys_clip  Gatys et al. with Ruder et al.'s temporal term and warm starts (`stylize_clip`, `ClipSettings`)
  fast_clip   any per-frame method (WCT, AdaIN) or the whole clip at once (`stylize_together`), then the
              consistency pass (`stylize_frames`, `stabilize`)
  state       the state folder: finished frames, a run key, resuming (`ClipState`, `run_key`)
"""

from nst_jax.methods.video.fast_clip import stabilize, stylize_frames, stylize_together
from nst_jax.methods.video.gatys_clip import (DEFAULT_ITERATIONS, DEFAULT_TEMPORAL_WEIGHT, ClipSettings, clip_flows,
                                              stylize_clip)
from nst_jax.methods.video.state import ClipState, run_key

__all__ = ["ClipSettings", "ClipState", "clip_flows", "run_key", "stabilize", "stylize_clip", "stylize_frames",
           "stylize_together"]
