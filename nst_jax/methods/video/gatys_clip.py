"""Gatys et al. over a clip with Ruder et al.'s (2016) temporal loss.

Frame 0 is stylised as a still (`StylizeConfig.iterations_first`-like `ClipSettings.iterations_first`). Every later
frame t starts from the previous result warped into it along the content clip's flow, with the frame's own default
start (`StylizeConfig.init`) where that warp is unreliable (disocclusions, motion boundaries, outside the frame),
and adds the long-term temporal term (`StylizeConfig.temporal_weight`) towards the results of frames t - j, j in
`ClipSettings.temporal_frames`, each warped into frame t along the flow t -> t - j with its reliability mask
(c_long: a pixel counts towards the nearest earlier frame where it is reliable).

The warped results and masks reach the loss as guides (`nst_jax.objective.registry.TEMPORAL_GUIDES`), inputs of the
jitted step like every target, with J = len(temporal_frames) at every frame (masks of frames before the clip's
start are 0): frames after the first share one compiled optimisation loop. Flows for each gap j come from
`nst_jax.video.flow.cached_clip_flows` and are cached in the state folder with the finished frames
(`nst_jax.methods.video.state`), so a stopped run continues at its first unfinished frame.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from nst_jax.errors import NSTError
from nst_jax.methods.gatys import stylize
from nst_jax.methods.video.state import ClipState, run_frames
from nst_jax.objective.config import StylizeConfig
from nst_jax.video import flow as video_flow
from nst_jax.video.reliability import reliability
from nst_jax.video.warp import warp
from nst_jax.weights.format import VGGWeights

Flows = dict[int, tuple[np.ndarray, np.ndarray]]  # gap j -> (forward, backward) of `cached_clip_flows(gap=j)`

# The temporal term's weight in the project's loss units and the iterations of a frame after the first that it
# needs: on the shared Sintel clip at 512 px this holds the painting in place (warping error ~2x the content clip's
# own) at the per-frame style loss or below; ten times less lets the strokes move (docs/video.md).
DEFAULT_TEMPORAL_WEIGHT = 3e5
DEFAULT_ITERATIONS = 60


@dataclasses.dataclass(frozen=True)
class ClipSettings:
  """How a clip is run beyond each frame's `StylizeConfig`.

  temporal_frames: the gaps j of the long-term temporal term (Ruder et al.: 1 short-term; e.g. 1, 2, 4).
  iterations_first: the first frame's iterations (None: the config's); later frames start from the warped previous
    result and need fewer (`StylizeConfig.iterations`).
  warm_start: start frames after the first from the warped previous result (False: every frame from its own
    default start, i.e. independent per-frame stylisation when the temporal weight is 0).
  flow_preset: the DIS preset of the content clip's flows.
  """

  temporal_frames: tuple[int, ...] = (1,)
  iterations_first: int | None = None
  warm_start: bool = True
  flow_preset: str = video_flow.DEFAULT_PRESET

  def __post_init__(self) -> None:
    gaps = tuple(self.temporal_frames)
    if not gaps or any(not isinstance(j, (int, np.integer)) or j < 1 for j in gaps) or len(set(gaps)) != len(gaps):
      raise NSTError(f"--temporal_frames must be distinct whole numbers >= 1 (e.g. 1,2,4), got {list(gaps)}")
    object.__setattr__(self, "temporal_frames", tuple(sorted(int(j) for j in gaps)))
    if self.iterations_first is not None and self.iterations_first < 1:
      raise NSTError(f"--iterations_first must be at least 1, got {self.iterations_first}")


def clip_flows(frames: np.ndarray, gaps: Sequence[int], *, cache_dir=None,
               preset: str = video_flow.DEFAULT_PRESET) -> Flows:
  """The flows of `frames` for gap 1 (the start) and every gap in `gaps`, cached in `cache_dir`."""
  return {j: video_flow.cached_clip_flows(frames, cache_dir=cache_dir, preset=preset, gap=j)
          for j in sorted({1, *gaps}) if j < len(frames)}


def temporal_guides(results: Sequence[np.ndarray], t: int, gaps: Sequence[int], flows: Flows
                    ) -> dict[str, np.ndarray]:
  """The temporal term's guides of frame t: [J, H, W, 3] results of frames t - j warped into frame t and their
  [J, H, W] reliability masks (zeros where t - j < 0), nearest first."""
  shape = results[0].shape
  previous = np.zeros((len(gaps), *shape), np.float32)
  masks = np.zeros((len(gaps), *shape[:2]), np.float32)
  for i, j in enumerate(gaps):
    if t - j >= 0:
      forward, backward = flows[j]
      previous[i] = np.asarray(warp(results[t - j], backward[t - j]))
      masks[i] = np.asarray(reliability(backward[t - j], forward[t - j]))
  return {"temporal_previous": previous, "temporal_masks": masks}


def warm_start(previous: np.ndarray, mask: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
  """The start of a frame after the first: `previous` (the last result warped into the frame) where `mask` [H, W]
  is 1, the frame's default start elsewhere."""
  return lambda default: mask[..., None] * previous + (1.0 - mask[..., None]) * default


def stylize_clip(frames: np.ndarray, *, styles: Sequence[np.ndarray], weights: VGGWeights, config: StylizeConfig,
                 settings: ClipSettings = ClipSettings(), state: ClipState | None = None,
                 flows: Flows | None = None, on_frame: Callable[[int, np.ndarray], None] | None = None,
                 progress: bool = False) -> tuple[np.ndarray, list[float]]:
  """Stylises a clip frame by frame with the temporal term and warm starts.

  Args:
    frames: [T, H, W, 3] the content clip in [0, 1], at the output's size (`config.size` is taken from it).
    styles, weights, config: as `nst_jax.methods.gatys.stylize` takes them for one frame; `config.temporal_weight`
      weighs the temporal term on frames after the first (0: none).
    settings: the clip's settings (`ClipSettings`).
    state: the state folder (finished frames, flows); frames it holds are not computed again.
    flows: the content clip's flows (`clip_flows`), else computed (and cached in `state`'s folder).
    on_frame: `(t, result)` after each frame computed (raising stops the run; the state keeps what is done).
    progress: each frame's progress bar on stderr.

  Returns:
    ([T, H, W, 3] the results in [0, 1], as saved; the seconds each frame took, 0 for frames read from `state`).
  """
  frames = np.asarray(frames, np.float32)
  config = dataclasses.replace(config, size=max(frames.shape[1:3]))
  first = dataclasses.replace(config, temporal_weight=0.0, iterations=settings.iterations_first or config.iterations)
  gaps = settings.temporal_frames
  if flows is None and len(frames) > 1 and (config.temporal_weight > 0 or settings.warm_start):
    flows = clip_flows(frames, gaps, cache_dir=state.folder if state is not None else None,
                       preset=settings.flow_preset)

  def frame(t: int, results: list[np.ndarray]) -> np.ndarray:
    if t == 0:
      return stylize(content=frames[0], styles=styles, weights=weights, config=first, progress=progress).image
    guides, start = None, None
    if config.temporal_weight > 0 or settings.warm_start:
      guides = temporal_guides(results, t, gaps if 1 in gaps else (1, *gaps), flows)
      if settings.warm_start:
        start = warm_start(guides["temporal_previous"][0], guides["temporal_masks"][0])
      if 1 not in gaps:  # gap 1 was only needed for the start
        guides = {name: value[1:] for name, value in guides.items()}
    return stylize(content=frames[t], styles=styles, weights=weights, config=config, progress=progress,
                   guides=guides if config.temporal_weight > 0 else None, start=start).image

  results, seconds = run_frames(len(frames), frame, state=state, on_frame=on_frame)
  return np.stack(results), seconds
