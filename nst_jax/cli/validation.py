"""Checks every command runs on its inputs before anything is compiled.

Numbers that must be finite or positive, working sizes, style images large enough for the layers, folders that
can be written. Each failure is an `NSTError` of one line that names the flag, the value and what to do.
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Iterable, Sequence

import numpy as np

from nst_jax.errors import NSTError
from nst_jax.io import image_io
from nst_jax.losses import octaves
from nst_jax.models import vgg

MIN_WORKING_SIDE = 4  # fewer pixels than a 3x3 filter's reach on a side: an image of border only


def check_learning_rate(value: float | None) -> None:
  """Raises NSTError unless the step size, when given, is positive (a negative one climbs the loss)."""
  if value is not None and not value > 0:
    raise NSTError(f"--learning_rate must be a positive number, got {value:g}: it is a step size (e.g. 0.02 for "
                   "adam; leave it out for lbfgs's line search)")


def check_iterations(value: int | None, flag: str = "--iterations") -> None:
  """Raises NSTError for a negative iteration count given by `flag`."""
  if value is not None and value < 0:
    raise NSTError(f"{flag} must be >= 0, got {value}")


def min_side_needed(size: int, shape: tuple[int, ...], minimum: int) -> int:
  """The smallest long side at which an image of `shape` has a short side of `minimum` pixels."""
  h, w = shape[:2]
  return max(size, math.ceil(minimum * max(h, w) / min(h, w)))


def check_working_size(shape: tuple[int, ...], size: int, *, what: str, minimum: int, flag: str = "--size") -> None:
  """Raises NSTError unless an image of `shape` resized to long side `size` keeps `minimum` pixels a side."""
  h, w = image_io.long_side_shape(shape, size)
  if min(h, w) < minimum:
    raise NSTError(f"{flag} {size} makes the {what} ({shape[1]}x{shape[0]} px) {w}x{h} px: too small to stylize "
                   f"(each side needs {minimum} px); raise {flag} to at least {min_side_needed(size, shape, minimum)} "
                   "or crop the image")


def min_side(arch: str, layers: Iterable[str]) -> int:
  """Pixels the short side of an image needs at its working size for the deepest of `layers`.

  One doubling per pooling before it, times the layer's downsampling factor (relu2_1@4), so that it has at least
  one position; and at least `MIN_WORKING_SIDE`."""
  order = vgg.layer_names(arch)
  need = MIN_WORKING_SIDE
  for name in layers:
    base, factor = octaves.split(name)
    pools = sum(1 for layer in order[:order.index(base)] if layer.startswith("pool"))
    need = max(need, factor * 2 ** pools)
  return need


def check_style_working_sizes(styles: Sequence[np.ndarray], paths: Sequence[str] | None, long_sides: Sequence[int],
                              minimum: int) -> None:
  """Raises NSTError unless each style resized to its long side keeps `minimum` pixels on its short side."""
  for i, (style, long_side) in enumerate(zip(styles, long_sides)):
    h, w = image_io.long_side_shape(style.shape, long_side)
    if min(h, w) < minimum:
      name = repr(paths[i]) if paths else "(the demo painting)"
      raise NSTError(f"style image {name} becomes {w}x{h} px at --size x --style_scale = {long_side}: the deepest "
                     f"style layer needs {minimum} px on each side; raise --style_scale or --size, or use shallower "
                     "--style_layers")


def check_writable_folder(path: str | os.PathLike, flag: str) -> pathlib.Path:
  """`path` as a folder the command may create and write in; NSTError naming `flag` otherwise.

  Not a file, and its nearest existing ancestor writable."""
  folder = pathlib.Path(path).expanduser()
  if folder.exists() and not folder.is_dir():
    raise NSTError(f"{flag} {str(path)!r} is a file, not a folder; give a folder (created if missing)")
  existing = folder.absolute()
  while not existing.exists() and existing != existing.parent:
    existing = existing.parent
  if not existing.is_dir():
    raise NSTError(f"{flag} {str(path)!r}: {str(existing)!r} is a file, not a folder")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise NSTError(f"{flag} {str(path)!r}: {str(existing)!r} is not writable; choose a folder you can write to")
  return folder
