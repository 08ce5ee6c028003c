"""The training input pipeline of the feed-forward decoders (AdaIN, WCT).

Image lists, a bounded decoded-image pool, and batches of random crops that are a pure function of (seed, step),
built on host threads ahead of the device. Images and NumPy only, no model: so it sits with the other file input
and both methods' training share it.
"""

from __future__ import annotations

import concurrent.futures
import os
import pathlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from nst_jax.errors import NSTError
from nst_jax.io import image_io

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def list_images(folders: Sequence[str | os.PathLike], *, exclude: Sequence[str] = ()) -> list[pathlib.Path]:
  """Image files directly in `folders` (or the files themselves), sorted, minus names in `exclude`."""
  paths: list[pathlib.Path] = []
  for folder in folders:
    folder = pathlib.Path(folder)
    if folder.is_file():
      paths.append(folder)
    elif folder.is_dir():
      paths += sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    else:
      raise NSTError(f"image folder {str(folder)!r} does not exist")
  excluded = set(exclude)
  return [p for p in paths if p.name not in excluded and p.stem not in excluded]


def _cap(image: np.ndarray, max_side: int) -> np.ndarray:
  return image_io.resize_long_side(image, max_side) if max(image.shape[:2]) > max_side else image


def to_uint8(image: np.ndarray, max_side: int) -> np.ndarray:
  """A float [0, 1] image capped at `max_side` px as uint8: how `ImagePool` keeps decoded images."""
  return (np.clip(_cap(np.asarray(image, np.float32), max_side), 0, 1) * 255).astype(np.uint8)


def _header_problem(path: pathlib.Path) -> str | None:
  """None when `path` opens as an image with a non-empty size; otherwise what is wrong, in a few words."""
  try:
    with Image.open(path) as im:
      return None if im.width > 0 and im.height > 0 else "has an empty image size"
  except UnidentifiedImageError:
    return "is not an image file Pillow can read"
  except Exception as e:  # pylint: disable=broad-except
    return f"could not be opened: {type(e).__name__}: {e}"  # missing, unreadable, too large, ...


class ImagePool(Sequence):
  """Training images as uint8 (H, W, 3), capped at `max_side`, decoded on first use on the batch threads.

  Decoded images are kept while their total stays under `cache_bytes`: a small set is decoded once, and a folder
  of the paper's size (~80k photos, ~80k paintings) trains in bounded memory, the images beyond the budget being
  decoded again when drawn. Arrays pass through (capped). Files without a readable image header are left out at
  construction (logged), and a file that fails to decode twice in a row later is logged once and replaced by the
  next image for the rest of the run, so one corrupt file in tens of thousands does not end a long run; batches stay
  a function of (seed, step) as long as files fail always or never."""

  def __init__(self, sources: Sequence[pathlib.Path | np.ndarray], *, max_side: int, cache_bytes: int = 8 << 30,
               threads: int = 8, log: Callable[[str], None] = print) -> None:
    if cache_bytes < 0 or threads < 1:
      raise NSTError(f"the image cache must be >= 0 bytes and threads >= 1, got {cache_bytes}, {threads}")
    self.max_side, self.cache_bytes, self._log = max_side, cache_bytes, log
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
      problems = list(pool.map(lambda src: None if isinstance(src, np.ndarray) else _header_problem(src), sources))
    self._sources = []
    for src, problem in zip(sources, problems):
      if problem:
        log(f"skipped: training image {str(src)!r} {problem}")
      else:
        self._sources.append(to_uint8(src, max_side) if isinstance(src, np.ndarray) else pathlib.Path(src))
    if not self._sources:
      raise NSTError("no readable training images")
    self._cache: dict[int, np.ndarray] = {}
    self.cached_bytes = 0
    self._broken: set[int] = set()
    self._lock = threading.Lock()

  def __len__(self) -> int:
    return len(self._sources)

  def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
    index = range(len(self))[index]  # an int in range (IndexError otherwise)
    for offset in range(len(self)):
      i = (index + offset) % len(self)
      src = self._sources[i]
      if isinstance(src, np.ndarray):
        return src
      if i in self._cache:
        return self._cache[i]
      if i in self._broken:
        continue
      try:
        img = self._decode(src)
      except NSTError as e:
        with self._lock:
          if i not in self._broken:
            self._broken.add(i)
            self._log(f"skipped: {e}")
        continue
      img.setflags(write=False)  # shared between threads and batches
      with self._lock:
        if i not in self._cache and self.cached_bytes + img.nbytes <= self.cache_bytes:
          self._cache[i] = img
          self.cached_bytes += img.nbytes
      return img
    raise NSTError("no training image could be decoded")

  def _decode(self, path: pathlib.Path) -> np.ndarray:
    try:
      return to_uint8(image_io.load_image(path, what="training image"), self.max_side)
    except NSTError:  # once more: a network file system may fail once; a corrupt file fails every time
      return to_uint8(image_io.load_image(path, what="training image"), self.max_side)


def random_crop(image: np.ndarray, rng: np.random.Generator, *, crop: int, min_scale: float,
                max_scale: float) -> np.ndarray:
  """A crop x crop float32 patch of `image`, augmented.

  The image is scaled so its short side is crop * U(min_scale, max_scale) (up to its own size), a window is placed
  uniformly, and it is flipped horizontally with probability 1/2."""
  h, w = image.shape[:2]
  short = min(h, w)
  target_short = crop * rng.uniform(min_scale, max_scale)
  window = max(1, min(short, int(round(crop * short / target_short))))  # source pixels that become `crop`
  y, x = rng.integers(0, h - window + 1), rng.integers(0, w - window + 1)
  patch = Image.fromarray(image[y:y + window, x:x + window]).resize((crop, crop), Image.Resampling.BILINEAR)
  out = np.asarray(patch, np.float32) / 255.0
  return out[:, ::-1] if rng.random() < 0.5 else out


def rotate_hue(image: np.ndarray, degrees: float) -> np.ndarray:
  """`image` (RGB [0, 1]) with its colours rotated by `degrees` about the grey axis, clipped to [0, 1].

  A rotation about (1, 1, 1) keeps every pixel's grey level (r + g + b) / 3 and its distance from grey (chroma), so
  a style crop keeps its brush strokes and contrast but gets another palette: more styles' colour statistics for a
  decoder trained on few paintings."""
  theta = np.deg2rad(degrees)
  axis = np.full(3, 1 / np.sqrt(3))
  cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
  rotation = np.cos(theta) * np.eye(3) + np.sin(theta) * cross + (1 - np.cos(theta)) * np.outer(axis, axis)
  return np.clip(image @ rotation.T.astype(np.float32), 0.0, 1.0)


def make_batch(contents: Sequence[np.ndarray], styles: Sequence[np.ndarray], step: int, *, config: Any,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
  """The (content, style) batch of `step`: a pure function of (seed, step) and the image pools.

  `config` gives the crop, batch size and scale range (`random_crop`); with `style_hue` each style crop's hue is
  rotated by up to 180 * style_hue degrees (`rotate_hue`), and with `gray_styles` that share of them is made gray."""
  rng = np.random.default_rng([seed, step])
  kw = dict(crop=config.crop, min_scale=config.min_scale, max_scale=config.max_scale)
  c = [random_crop(contents[rng.integers(len(contents))], rng, **kw) for _ in range(config.batch)]
  s = [random_crop(styles[rng.integers(len(styles))], rng, **kw) for _ in range(config.batch)]
  if config.style_hue:  # drawn only when on, so runs without it keep their batches
    s = [rotate_hue(x, 180 * config.style_hue * rng.uniform(-1, 1)) for x in s]
  if config.gray_styles:  # likewise
    s = [np.repeat(x @ _LUMA[:, None], 3, axis=-1) if rng.random() < config.gray_styles else x for x in s]
  return np.stack(c), np.stack(s)


_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def batches(contents, styles, *, start: int, stop: int, config: Any, prefetch: int = 4,
            threads: int = 2) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
  """(step, content, style) for steps start..stop-1, built on `threads` threads, `prefetch` steps ahead."""
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    pending = {}
    for step in range(start, stop):
      for ahead in range(step, min(stop, step + prefetch + 1)):
        if ahead not in pending:
          pending[ahead] = pool.submit(make_batch, contents, styles, ahead, config=config, seed=config.seed)
      c, s = pending.pop(step).result()
      yield step, c, s
