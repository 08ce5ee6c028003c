"""Feed-forward stylisation of a clip (WCT, AdaIN or any per-frame function) made stable afterwards by the blind
consistency pass (Bonneel et al. 2015, `nst_jax.video.consistency`), which also serves results of another tool
(`stabilize` alone). `stylize_together` runs a method that takes the whole clip at once (WCT and AdaIN with
clip-wide content statistics: one transform per level for every frame, so the texture moves only where the content
does).

The style is encoded once per clip by whoever builds `stylize_frame` (cached WCT transforms, AdaIN statistics);
each finished frame goes to the state folder like the Gatys frames (`nst_jax.methods.video.state`), then the pass
runs over the whole sequence with the content clip's flows, reliability masks and agreement weights.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from nst_jax.errors import NSTError
from nst_jax.methods.video.state import ClipState, quantized, run_frames
from nst_jax.video import consistency
from nst_jax.video import flow as video_flow


def stylize_frames(frames: np.ndarray, stylize_frame: Callable[[np.ndarray], np.ndarray], *,
                   state: ClipState | None = None,
                   on_frame: Callable[[int, np.ndarray], None] | None = None,
                   stylize_batch: Callable[[np.ndarray], np.ndarray] | None = None,
                   batch_size: int = 1) -> tuple[np.ndarray, list[float]]:
  """([T, H, W, 3] `stylize_frame` of each frame, as saved; seconds per frame), resuming from `state`.

  With `stylize_batch` ([N, H, W, 3] -> the same frames stylised, e.g. sharded over devices), the unfinished
  frames go through it `batch_size` at a time instead; each is still saved as it comes, and a batch's seconds
  fall on its first frame."""
  frames = np.asarray(frames, np.float32)
  pending: dict[int, np.ndarray] = {}

  def frame(t: int, results: list[np.ndarray]) -> np.ndarray:
    del results
    if stylize_batch is not None and t not in pending:
      chunk = np.asarray(stylize_batch(frames[t:t + max(1, batch_size)]), np.float32)
      if len(chunk) != len(frames[t:t + max(1, batch_size)]):
        raise NSTError(f"the batch of frames {t + 1}... came back with {len(chunk)} frames")
      pending.update({t + i: image for i, image in enumerate(chunk)})
    out = pending.pop(t) if stylize_batch is not None else np.asarray(stylize_frame(frames[t]), np.float32)
    if out.shape != frames[t].shape:
      raise NSTError(f"the stylised frame is {out.shape[1]}x{out.shape[0]}, the content frame "
                     f"{frames[t].shape[1]}x{frames[t].shape[0]}")
    return out

  results, seconds = run_frames(len(frames), frame, state=state, on_frame=on_frame)
  return np.stack(results), seconds


def stylize_together(frames: np.ndarray, stylize_clip: Callable[[np.ndarray], np.ndarray], *,
                     state: ClipState | None = None,
                     on_frame: Callable[[int, np.ndarray], None] | None = None) -> tuple[np.ndarray, list[float]]:
  """`stylize_frames` for a method that needs the whole clip at once (clip-wide statistics): ([T, H, W, 3] results
  as saved; seconds per frame, the clip's time shared out), read back from `state` when it holds every frame."""
  frames = np.asarray(frames, np.float32)
  saved = [state.load(t) for t in range(len(frames))] if state is not None else [None]
  if all(s is not None for s in saved):
    return np.stack(saved), [0.0] * len(frames)
  start = time.perf_counter()
  out = np.asarray(stylize_clip(frames), np.float32)
  if out.shape != frames.shape:
    raise NSTError(f"the stylised clip is {out.shape}, the content clip {frames.shape}")
  seconds = (time.perf_counter() - start) / len(frames)
  results = []
  for t, image in enumerate(out):
    results.append(state.save(t, image) if state is not None else quantized(image))
    if on_frame is not None:
      on_frame(t, results[-1])
  return np.stack(results), [seconds] * len(frames)


def stabilize(frames: np.ndarray, stylized: np.ndarray, *, lam: float = consistency.STYLIZED_LAMBDA,
              alpha: float = consistency.DEFAULT_ALPHA, flows: tuple[np.ndarray, np.ndarray] | None = None,
              cache_dir=None, preset: str = video_flow.DEFAULT_PRESET) -> np.ndarray:
  """The consistency pass over `stylized` [T, H, W, 3], guided by the content clip `frames` of the same shape.

  Args:
    frames, stylized: the original and the per-frame processed clip.
    lam, alpha: the pass's weight towards the previous output and the agreement weights' sharpness.
    flows: the content clip's (forward, backward) flows, else computed with `preset` (cached in `cache_dir`).

  Returns:
    [T, H, W, 3] float32 in [0, 1].
  """
  frames, stylized = np.asarray(frames, np.float32), np.asarray(stylized, np.float32)
  if frames.shape != stylized.shape:
    raise NSTError(f"the stylised clip ({len(stylized)} frames of {stylized.shape[2]}x{stylized.shape[1]}) does not "
                   f"match the content clip ({len(frames)} frames of {frames.shape[2]}x{frames.shape[1]})")
  if not (np.isfinite(lam) and lam > 0):
    raise NSTError(f"--consistency_lambda must be a positive number, got {lam}")
  if len(frames) < 2:
    return stylized
  forward, backward = flows if flows is not None else video_flow.cached_clip_flows(frames, cache_dir=cache_dir,
                                                                                   preset=preset)
  weights = consistency.consistency_weights(frames, forward, backward, alpha=alpha)
  return np.clip(consistency.temporal_consistency(stylized, backward, weights, lam=lam), 0.0, 1.0)
