"""Dense optical flow between the frames of a clip: OpenCV's DIS (Kroeger et al. 2016), on the CPU, cached.

DIS (dense inverse search) is a classical method: patches matched by inverse-compositional search on an image
pyramid, densified, then refined variationally. It needs no weights and runs in tens of milliseconds a frame pair at
512 px on one core (docs/video.md), which is why it is the flow here. OpenCV (`cv2`, from opencv-python-headless)
is imported only when a flow is computed.

Presets (OpenCV's, plus one of ours): "fast" and "medium" are OpenCV's FAST and MEDIUM; "fine" is MEDIUM run down
to full resolution (finest scale 0) with a denser patch grid and more refinement, our default: its accuracy on the
sub-pixel pan and its time on the shared clip are measured in docs/video.md.

Flows follow the package convention (`nst_jax/video/__init__.py`): forward[t] = t -> t+1 on frame t's grid,
backward[t] = t+1 -> t on frame t+1's grid, (dx, dy) in pixels.

The flows of a clip are computed once and kept in a state file (`nst_jax.io.checkpoint`, kind
"nst_jax-video-flows", compressed, written atomically) in a given folder, named by a hash of the frames' gray
levels, their shape, the preset and the OpenCV version: a second run on the same frames reads them back.
"""

from __future__ import annotations

import hashlib
import os
import pathlib

import numpy as np

from nst_jax.errors import NSTError
from nst_jax.io import checkpoint

FORMAT, FORMAT_VERSION = "nst_jax-video-flows", 1
PRESETS = ("fast", "medium", "fine")
DEFAULT_PRESET = "fine"


def opencv():
  """The cv2 module, or a one-line NSTError saying how to install it."""
  try:
    import cv2  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise NSTError("optical flow needs OpenCV: pip install 'nst_jax[video]'") from None
  return cv2


def dis(preset: str):
  """A cv2.DISOpticalFlow for `preset` (see the module docstring)."""
  if preset not in PRESETS:
    raise NSTError(f"unknown flow preset {preset!r}; use one of {', '.join(PRESETS)}")
  cv2 = opencv()
  base = cv2.DISOPTICAL_FLOW_PRESET_FAST if preset == "fast" else cv2.DISOPTICAL_FLOW_PRESET_MEDIUM
  method = cv2.DISOpticalFlow_create(base)
  if preset == "fine":
    method.setFinestScale(0)
    method.setPatchStride(2)
    method.setVariationalRefinementIterations(10)
  return method


def gray_levels(frames: np.ndarray) -> np.ndarray:
  """[T, H, W, 3] floats in [0, 1] -> [T, H, W] uint8 luma (ITU-R BT.601 weights), what DIS matches."""
  luma = np.tensordot(np.asarray(frames, np.float32), np.array([0.299, 0.587, 0.114], np.float32), axes=([-1], [0]))
  return np.round(np.clip(luma, 0.0, 1.0) * 255.0).astype(np.uint8)


def pair_flow(first: np.ndarray, second: np.ndarray, *, preset: str = DEFAULT_PRESET) -> np.ndarray:
  """Flow first -> second, [H, W, 2] float32 (dx, dy) on `first`'s grid: first(p) ~ second(p + flow(p)).

  Args:
    first, second: [H, W] uint8 gray frames (`gray_levels`) or [H, W, 3] floats in [0, 1].
    preset: "fast", "medium" or "fine".
  """
  first, second = (gray_levels(f[None])[0] if f.ndim == 3 else np.ascontiguousarray(f, np.uint8)
                   for f in (first, second))
  return dis(preset).calc(first, second, None).astype(np.float32)


def clip_flows(frames: np.ndarray, *, preset: str = DEFAULT_PRESET, gap: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """(forward, backward), each [T-gap, H, W, 2] float32, of a clip [T, H, W, 3] (empty for T <= gap): forward[t]
  is the flow t -> t+gap, backward[t] t+gap -> t (gap 1: the package convention; larger gaps: Ruder et al.'s
  long-term pairs)."""
  gray = gray_levels(frames)
  method = dis(preset)
  shape = (max(len(gray) - gap, 0), *gray.shape[1:], 2)
  forward, backward = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
  for t in range(len(gray) - gap):
    forward[t] = method.calc(gray[t], gray[t + gap], None)
    backward[t] = method.calc(gray[t + gap], gray[t], None)
  return forward, backward


def cache_key(frames: np.ndarray, *, preset: str, gap: int = 1) -> str:
  """Hex digest naming a clip's flows: its gray levels (what DIS sees), shape, preset, gap and OpenCV version."""
  gray = gray_levels(frames)
  digest = hashlib.sha256()
  gap_part = f":gap{gap}" if gap != 1 else ""  # gap 1 keeps the key it had before gaps existed
  digest.update(f"{FORMAT}:{FORMAT_VERSION}:{gray.shape}:{preset}{gap_part}:{opencv().__version__}".encode())
  digest.update(gray.tobytes())
  return digest.hexdigest()


def cached_clip_flows(frames: np.ndarray, *, cache_dir: str | os.PathLike | None,
                      preset: str = DEFAULT_PRESET, gap: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """`clip_flows`, read from `cache_dir` when it holds this clip's flows and written there otherwise (None: no
  cache). A cache file that is damaged or of another kind is computed again and replaced: it is only a cache."""
  if cache_dir is None:
    return clip_flows(frames, preset=preset, gap=gap)
  key = cache_key(frames, preset=preset, gap=gap)
  path = pathlib.Path(cache_dir) / f"flows-{key[:24]}.npz"
  if path.is_file():
    try:
      meta, arrays = checkpoint.read(path, what="flow cache")
      checkpoint.check_format(meta, path=path, kind=FORMAT, versions=(FORMAT_VERSION,), what="flow cache")
      if meta.get("key") == key and arrays["forward"].shape == arrays["backward"].shape:
        return arrays["forward"], arrays["backward"]
    except (NSTError, KeyError):
      pass
  forward, backward = clip_flows(frames, preset=preset, gap=gap)
  checkpoint.write(path, kind=FORMAT, version=FORMAT_VERSION, arrays={"forward": forward, "backward": backward},
                   meta={"key": key, "preset": preset, "gap": gap, "frames": int(len(frames))}, compress=True)
  return forward, backward
