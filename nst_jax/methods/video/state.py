"""A clip run's state folder: every finished frame as a PNG (8 bits, what the output keeps), written atomically, and a key of what made
them, so that a run stopped after frame k continues at frame k+1 (the flows are cached in the same folder,
`nst_jax.video.flow.cached_clip_flows`).

A frame is used, by later frames and in the output, exactly as it was saved (read back from its file), so a resumed
run and an uninterrupted one give the same frames.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import time
from collections.abc import Callable, Sequence

import numpy as np

from nst_jax.errors import NSTError
from nst_jax.io import atomic, image_io

KEY_FILE = "run.json"
FRAME_NAME = "frame_{:05d}.png"  # numbered from 1, like the folder outputs of `nst_jax.io.video`


def run_key(arrays: Sequence[np.ndarray], settings: object) -> str:
  """sha256 of the arrays' bytes and shapes and of `repr(settings)`: what a state folder's frames depend on."""
  digest = hashlib.sha256(repr(settings).encode())
  for array in arrays:
    array = np.ascontiguousarray(array)
    digest.update(f"{array.shape}:{array.dtype}".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


class ClipState:
  """The state folder of one run (`folder`), made for `key` (`run_key`); a folder made for another key is refused,
  so frames of another clip, style or setting are never mixed in."""

  def __init__(self, folder: str | os.PathLike, *, key: str):
    self.folder = pathlib.Path(folder)
    if self.folder.exists() and not self.folder.is_dir():
      raise NSTError(f"state folder {str(self.folder)!r} is a file; choose another --state_dir")
    key_file = self.folder / KEY_FILE
    if key_file.is_file():
      try:
        found = json.loads(key_file.read_text()).get("key")
      except (OSError, ValueError, AttributeError):
        found = None
      if found != key:
        raise NSTError(f"state folder {str(self.folder)!r} holds the frames of another run (other frames, styles or "
                       "settings); remove it or choose another --state_dir")
    else:
      try:
        atomic.write_json(key_file, {"key": key})
      except OSError as e:
        raise NSTError(f"cannot write the state folder {str(self.folder)!r}: {e.strerror or e}") from None

  def frame_path(self, index: int) -> pathlib.Path:
    return self.folder / FRAME_NAME.format(index + 1)

  def load(self, index: int) -> np.ndarray | None:
    """Frame `index` (from 0) as saved, or None when it is not finished."""
    path = self.frame_path(index)
    return image_io.load_image(path, what="saved frame") if path.is_file() else None

  def save(self, index: int, image: np.ndarray) -> np.ndarray:
    """Writes frame `index` atomically; returns it as saved, the values every later step uses."""
    return image_io.load_image(image_io.save_image(self.frame_path(index), image), what="saved frame")


def quantized(image: np.ndarray) -> np.ndarray:
  """`image` clipped to [0, 1] and rounded to 8 bits, as `ClipState.save` keeps it (runs without a state folder
  give the same frames as runs with one)."""
  return (np.round(np.clip(np.nan_to_num(image), 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def run_frames(count: int, stylize_frame: Callable[[int, list[np.ndarray]], np.ndarray], *,
               state: ClipState | None = None,
               on_frame: Callable[[int, np.ndarray], None] | None = None) -> tuple[list[np.ndarray], list[float]]:
  """Frame by frame: `stylize_frame(t, results of frames 0..t-1)`, skipping the frames `state` already holds.

  Args:
    count: the number of frames.
    stylize_frame: the result of frame t given the earlier results.
    state: where finished frames are kept (None: nowhere; the frames are still rounded the same way).
    on_frame: `(t, result)` after each frame this call computed (e.g. progress; raising stops the run, and the
      frames finished so far stay in `state`).

  Returns:
    (the T results, the seconds each took; 0 for a frame read back from `state`).
  """
  results: list[np.ndarray] = []
  seconds: list[float] = []
  for t in range(count):
    saved = state.load(t) if state is not None else None
    if saved is not None:
      results.append(saved)
      seconds.append(0.0)
      continue
    start = time.perf_counter()
    image = stylize_frame(t, results)
    image = state.save(t, image) if state is not None else quantized(image)
    seconds.append(time.perf_counter() - start)
    results.append(image)
    if on_frame is not None:
      on_frame(t, image)
  return results, seconds
