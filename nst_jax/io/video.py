"""Clips in and out: a video file, a folder of images or a printf pattern (`frames/%04d.png`), as float32 RGB
frames [T, H, W, 3] in [0, 1].

Video files go through the ffmpeg binary that the imageio-ffmpeg wheel ships (no system ffmpeg needed), imported
only here and only when a video is read or written: `import nst_jax` and the image commands never need it. Frames
of folders and patterns are images read and written with `image_io` (Pillow).

Memory: a clip is one float32 array, 12 bytes a pixel (33 frames of 1024x436: 177 MB). Decoding streams frame by
frame and keeps only the selected frames (`start`, `stride`, `max_frames`), each resized (`size`) as it arrives,
so a long or large video costs only what is kept. Optical flow and the temporal terms need every frame of a clip
anyway (flow in both directions, the previous output), so the clip is not streamed further than that.

Every problem with a clip is one line of `NSTError`: a missing, empty or undecodable file, a video without frames,
a folder without images or with frames of different sizes, an output container or extension ffmpeg is not asked
to write, an output that would overwrite the input. A one-frame clip (or a single image) is a clip like any other.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from nst_jax.errors import NSTError, NSTWarning
from nst_jax.io import atomic, image_io

DEFAULT_FPS = 25.0  # for a clip made of images, which carry no frame rate
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
# Containers we write: (encoder, pixel format, encoder options). yuv420p is what every player decodes; crf 17 is
# visually lossless for H.264 (VP9's scale differs: crf 24 with a free bitrate is about the same quality).
VIDEO_WRITERS = {
    ".mp4": ("libx264", "yuv420p", ["-crf", "17", "-preset", "medium"]),
    ".mov": ("libx264", "yuv420p", ["-crf", "17", "-preset", "medium"]),
    ".mkv": ("libx264", "yuv420p", ["-crf", "17", "-preset", "medium"]),
    ".webm": ("libvpx-vp9", "yuv420p", ["-crf", "24", "-b:v", "0"]),
    ".avi": ("mjpeg", "yuvj420p", ["-q:v", "2"]),
}
FRAME_NAME = "frame_{:05d}.png"  # a folder output's frames, numbered from 1 like ffmpeg's image writer
_PATTERN = re.compile(r"%(0?\d*)d")


class Clip(NamedTuple):
  """frames: float32 [T, H, W, 3] in [0, 1]; fps: frames per second of a video, None for images."""
  frames: np.ndarray
  fps: float | None


def imageio_ffmpeg():
  """The imageio_ffmpeg module, or a one-line NSTError saying how to install it."""
  try:
    import imageio_ffmpeg as module  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise NSTError("video files need imageio-ffmpeg: pip install 'nst_jax[video]'") from None
  return module


@contextlib.contextmanager
def starting_ffmpeg() -> Iterator[None]:
  """Around the start of the ffmpeg subprocess. Once JAX runs its threads, every fork warns that forking a threaded
  process may deadlock; the child here replaces itself with ffmpeg at once, so the warning does not apply and would
  only be a stray stderr line. Warning filters are process-wide and not thread-safe: only the main thread (the CLI)
  touches them."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
    yield


def source_kind(source: str | os.PathLike) -> str:
  """"pattern" (a `%d` in the name), "folder", "image" (an image extension) or "video"."""
  text = str(source)
  if _PATTERN.search(pathlib.Path(text).name):
    return "pattern"
  if pathlib.Path(text).is_dir():
    return "folder"
  return "image" if pathlib.Path(text).suffix.lower() in IMAGE_EXTENSIONS else "video"


def natural_key(name: str) -> list:
  """Sort key that orders frame_2 before frame_10."""
  return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def pattern_regex(pattern: str) -> re.Pattern:
  """The file names a printf pattern's basename (`frame_%04d.png`) stands for; group 1 is the number."""
  head, width, tail = _PATTERN.split(pattern, maxsplit=1)
  digits = rf"\d{{{int(width)},}}" if width.startswith("0") and width != "0" else r"\d+"
  return re.compile(re.escape(head) + f"({digits})" + re.escape(tail), flags=re.IGNORECASE)


def frame_files(source: str | os.PathLike, *, what: str) -> list[pathlib.Path]:
  """The image files of a folder (natural order; hidden files such as unfinished writes skipped) or of a pattern
  (by number)."""
  text = str(source)
  if source_kind(text) == "pattern":
    folder, name = pathlib.Path(text).parent, pathlib.Path(text).name
    if not folder.is_dir():
      raise NSTError(f"{what} {text!r}: folder {str(folder)!r} does not exist")
    regex = pattern_regex(name)
    matches = [(int(m.group(1)), p) for p in folder.iterdir() if (m := regex.fullmatch(p.name)) and p.is_file()]
    files = [p for _, p in sorted(matches)]
    if not files:
      raise NSTError(f"{what} {text!r}: no file in {str(folder)!r} matches the pattern")
    return files
  folder = pathlib.Path(text)
  files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS
                  and not p.name.startswith(".") and p.is_file()), key=lambda p: natural_key(p.name))
  if not files:
    raise NSTError(f"{what} folder {text!r} has no image files ({', '.join(IMAGE_EXTENSIONS)})")
  return files


def check_selection(*, start: int, stride: int, max_frames: int | None, size: int | None) -> None:
  if start < 0:
    raise NSTError(f"start must be 0 or more, got {start}")
  if stride < 1:
    raise NSTError(f"stride must be 1 or more, got {stride}")
  if max_frames is not None and max_frames < 1:
    raise NSTError(f"max_frames must be 1 or more, got {max_frames}")
  if size is not None and size < 1:
    raise NSTError(f"size must be 1 or more, got {size}")


def selected(index: int, *, start: int, stride: int) -> bool:
  return index >= start and (index - start) % stride == 0


def ffmpeg_reason(error: Exception) -> str:
  """The line of an imageio-ffmpeg error that says what went wrong (its message holds ffmpeg's whole log)."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  for line in lines:
    if "Error opening input:" in line:
      return line.split("Error opening input:", 1)[1].strip()
  return lines[-1] if lines else type(error).__name__


def video_frames(path: pathlib.Path, *, what: str) -> tuple[Iterator[np.ndarray], float]:
  """(uint8 RGB frames as they are decoded, frames per second) of a video file."""
  reader = imageio_ffmpeg().read_frames(str(path), pix_fmt="rgb24")
  try:
    with starting_ffmpeg():
      meta = next(reader)
  except (OSError, RuntimeError, StopIteration) as e:
    raise NSTError(f"{what} {str(path)!r} could not be read as a video (ffmpeg: {ffmpeg_reason(e)})") from None
  width, height = meta["size"]

  def frames() -> Iterator[np.ndarray]:
    try:
      for raw in reader:
        yield np.frombuffer(raw, np.uint8).reshape(height, width, 3)
    except (OSError, RuntimeError) as e:
      raise NSTError(f"{what} {str(path)!r}: decoding failed (ffmpeg: {ffmpeg_reason(e)})") from None
    finally:
      reader.close()  # stops ffmpeg when the selection ends before the video does

  return frames(), float(meta["fps"])


def resized(frame: np.ndarray, size: int | None) -> np.ndarray:
  frame = frame.astype(np.float32) / 255.0 if frame.dtype == np.uint8 else frame.astype(np.float32)
  return frame if size is None else image_io.resize(frame, *image_io.long_side_shape(frame.shape, size))


def read_frames(source: str | os.PathLike, *, start: int = 0, stride: int = 1, max_frames: int | None = None,
                size: int | None = None, what: str = "content") -> Clip:
  """Reads a clip: frames `start`, `start + stride`, ... (at most `max_frames`), resized to `size` px on the long
  side (up or down; None keeps the size).

  Args:
    source: a video file (any container and codec ffmpeg decodes), a folder of images (natural order), a printf
      pattern such as `frames/%04d.png` (by number), or one image (a one-frame clip).
    start, stride, max_frames, size: the selection and size, as above.
    what: names the input in error messages ("content", "style").

  Returns:
    Clip(frames float32 [T, H, W, 3] in [0, 1], fps: the video's rate, or None for images).
  """
  check_selection(start=start, stride=stride, max_frames=max_frames, size=size)
  kind, text = source_kind(source), str(source)
  path = pathlib.Path(text)
  if kind in ("video", "image"):
    if not path.exists():
      raise NSTError(f"{what} {text!r} does not exist")
    if path.is_file() and path.stat().st_size == 0:
      raise NSTError(f"{what} {text!r} is an empty file")
  fps = None
  if kind == "video":
    decoded, fps = video_frames(path, what=what)
    frames, count = [], 0
    for index, frame in enumerate(decoded):
      count = index + 1
      if selected(index, start=start, stride=stride):
        frames.append(resized(frame, size))
        if max_frames is not None and len(frames) == max_frames:
          decoded.close()
          break
    if count == 0:
      raise NSTError(f"{what} {text!r} has no video frames")
  else:
    files = [path] if kind == "image" else frame_files(text, what=what)
    count = len(files)
    chosen = [p for i, p in enumerate(files) if selected(i, start=start, stride=stride)][:max_frames]
    frames, first = [], None
    for file in chosen:
      image = image_io.load_image(file, what=f"{what} frame")
      if first is None:
        first = (file, image.shape)
      elif image.shape != first[1]:
        (h0, w0), (h, w) = first[1][:2], image.shape[:2]
        raise NSTError(f"{what} frames differ in size: {str(first[0])!r} is {w0}x{h0} px, {str(file)!r} is "
                       f"{w}x{h} px; give frames of one size")
      frames.append(resized(image, size))
  if not frames:
    raise NSTError(f"{what} {text!r}: start {start} is past its last frame (it has {count} "
                   f"frame{'' if count == 1 else 's'})")
  return Clip(np.stack(frames), fps)


def target_kind(target: str | os.PathLike) -> str:
  """"pattern", "folder" (an existing folder or a name without extension), "image" or "video"."""
  text = str(target)
  if _PATTERN.search(pathlib.Path(text).name):
    return "pattern"
  path = pathlib.Path(text)
  if path.is_dir() or text.endswith(("/", os.sep)) or not path.suffix:
    return "folder"
  return "image" if path.suffix.lower() in IMAGE_EXTENSIONS else "video"


def input_folder(source: str | os.PathLike) -> pathlib.Path | None:
  """The folder whose files a folder or pattern source reads; None for a file."""
  kind = source_kind(source)
  if kind == "folder":
    return pathlib.Path(source)
  return pathlib.Path(str(source)).parent if kind == "pattern" else None


def same_folder(a: pathlib.Path, b: pathlib.Path) -> bool:
  return a.absolute().resolve() == b.absolute().resolve()


def same_file(a: pathlib.Path, b: pathlib.Path) -> bool:
  """One file, through links and hard links when both exist, else by resolved path."""
  try:
    return os.path.samefile(a, b)
  except OSError:
    return a.absolute().resolve() == b.absolute().resolve()


def check_output(target: str | os.PathLike, *, source: str | os.PathLike | None = None) -> pathlib.Path:
  """Validates an output before any work: a container we write (VIDEO_WRITERS), a folder, a pattern or an image
  file; and that writing it cannot overwrite `source`: not the source file itself, and for frames read from a
  folder or pattern, nothing written into that folder. Returns the target as a path."""
  text, kind = str(target), target_kind(target)
  path = pathlib.Path(text)
  if kind == "video" and path.suffix.lower() not in VIDEO_WRITERS:
    raise NSTError(f"output {text!r}: unknown video container {path.suffix!r}; use one of "
                   f"{', '.join(sorted(VIDEO_WRITERS))}, a folder or a pattern such as frames/%04d.png")
  if source is None:
    return path
  folder_in = input_folder(source)
  folder_out = path if kind == "folder" else path.parent
  if folder_in is not None and same_folder(folder_out, folder_in):
    raise NSTError(f"output {text!r} would write into the input folder {str(folder_in)!r} and could overwrite "
                   "its frames; choose another folder")
  if folder_in is None:
    source_path = pathlib.Path(str(source))
    if kind in ("video", "image"):
      clash = same_file(path, source_path)
    else:
      names = pattern_regex(path.name) if kind == "pattern" else re.compile(r"frame_\d{5}\.png")
      clash = same_folder(folder_out, source_path.parent) and names.fullmatch(source_path.name) is not None
    if clash:
      raise NSTError(f"output {text!r} would overwrite the input {str(source)!r}; choose another output path")
  return path


def write_frames(target: str | os.PathLike, frames: np.ndarray | Sequence[np.ndarray], *,
                 fps: float | None = None, source: str | os.PathLike | None = None) -> pathlib.Path:
  """Writes a clip, each file atomically, after `check_output(target, source=source)`.

  Args:
    target: a video file (.mp4, .mov, .mkv: H.264; .webm: VP9; .avi: MJPEG), a folder (frames named
      frame_00001.png, ...), a pattern such as `out/%04d.png` (numbered from 1), or an image file for a one-frame
      clip.
    frames: [T, H, W, 3] floats in [0, 1] (or a sequence of [H, W, 3]); clipped to [0, 1] when written.
    fps: the video's frame rate; None: DEFAULT_FPS. Ignored for images.
    source: the clip's input, which must not be overwritten.

  Returns:
    The target path. A video with an odd side is padded to even sides (yuv420p's chroma is half resolution) by
    repeating the last row or column, with an `NSTWarning`.
  """
  path = check_output(target, source=source)
  kind = target_kind(target)
  frames = [np.asarray(f, dtype=np.float32) for f in frames]
  if not frames:
    raise NSTError(f"output {str(target)!r}: the clip has no frames to write")
  shapes = {f.shape for f in frames}
  if len(shapes) != 1 or len(frames[0].shape) != 3 or frames[0].shape[-1] != 3:
    raise NSTError(f"output {str(target)!r}: frames must all be (H, W, 3) of one size, got {sorted(shapes)}")
  if kind == "image":
    if len(frames) != 1:
      raise NSTError(f"output {str(target)!r} is one image but the clip has {len(frames)} frames; give a video "
                     f"file (.mp4), a folder or a pattern such as {path.stem}_%04d{path.suffix}")
    return image_io.save_image(path, frames[0])
  if kind in ("folder", "pattern"):
    for index, frame in enumerate(frames, start=1):
      name = FRAME_NAME.format(index) if kind == "folder" else path.name % index
      image_io.save_image((path if kind == "folder" else path.parent) / name, frame)
    return path
  return write_video(path, frames, fps=DEFAULT_FPS if fps is None else float(fps))


def even_sides(frames: list[np.ndarray], target: pathlib.Path) -> list[np.ndarray]:
  h, w = frames[0].shape[:2]
  if h % 2 == 0 and w % 2 == 0:
    return frames
  warnings.warn(NSTWarning(f"output {str(target)!r}: {w}x{h} px has an odd side, which yuv420p video cannot hold; "
                           f"padded to {w + w % 2}x{h + h % 2} px by repeating the last column or row"),
                stacklevel=3)
  return [np.pad(f, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge") for f in frames]


def write_video(path: pathlib.Path, frames: list[np.ndarray], *, fps: float) -> pathlib.Path:
  if not fps > 0:
    raise NSTError(f"output {str(path)!r}: frame rate must be positive, got {fps}")
  codec, pixel_format, options = VIDEO_WRITERS[path.suffix.lower()]
  frames = even_sides(frames, path)
  h, w = frames[0].shape[:2]
  module = imageio_ffmpeg()
  try:
    with atomic.atomic_path(path) as tmp:
      writer = module.write_frames(str(tmp), (w, h), fps=fps, codec=codec, pix_fmt_out=pixel_format,
                                   quality=None, macro_block_size=1, ffmpeg_log_level="error",
                                   output_params=options)
      with starting_ffmpeg():
        writer.send(None)
      try:
        for frame in frames:
          writer.send(np.ascontiguousarray(np.round(np.clip(np.nan_to_num(frame), 0, 1) * 255).astype(np.uint8)))
      finally:
        writer.close()
  except (OSError, RuntimeError) as e:
    raise NSTError(f"cannot write {str(path)!r} (ffmpeg: {ffmpeg_reason(e)})") from None
  return path


def checked_clip(frames: np.ndarray, window: int) -> np.ndarray:
  """`frames` as a float32 [T, H, W, 3] clip for clip-wide statistics over `window` frames (0: the whole clip);
  NSTError for anything else."""
  frames = np.asarray(frames, np.float32)
  if frames.ndim != 4 or len(frames) == 0:
    raise NSTError(f"a clip of frames [T, H, W, 3] is needed, got shape {frames.shape}")
  if window < 0:
    raise NSTError(f"--statistics_window must be 0 (the whole clip) or a number of frames, got {window}")
  return frames
