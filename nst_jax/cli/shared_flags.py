"""Flags that every command defines (each on its own FlagValues: images, weights) and the helpers that read them.

The optimisation commands' own shared flags are in `optimization_flags`; this module stays light to import, since
`adain` is meant to answer in seconds.
"""

from __future__ import annotations

import math

import numpy as np
from absl import flags

from nst_jax.errors import NSTError
from nst_jax.io import image_io
from nst_jax.losses import guidance

Section = tuple[str, list[str]]
MIN_MASK_COVER = 1.0 / 255  # a mask whose brightest pixel is darker than one 8-bit step selects nothing


def define_images(fv: flags.FlagValues, *, content: str | None, style: str, output: str, size: int | None,
                  size_help: str) -> Section:
  """Defines --content, --style, --output, --size and --weights with the command's defaults; returns their section.

  `content=None`: a command without a content image (synthesize)."""
  if content is not None:
    flags.DEFINE_string("content", None, content, flag_values=fv)
  flags.DEFINE_list("style", None, style, flag_values=fv)
  flags.DEFINE_string("output", output, "Output image (.png, .jpg, .tif, ...), written atomically.", flag_values=fv)
  flags.DEFINE_integer("size", size, size_help, flag_values=fv)
  flags.DEFINE_string("weights", "hed-vgg16", "VGG weights: a name known to `python -m nst_jax weights list` or a "
                      ".npz file.", flag_values=fv)
  return "images", (["content"] if content is not None else []) + ["style", "output", "size", "weights"]


def floats(values: list[str], flag: str) -> tuple[float, ...]:
  """A list flag's values as finite floats; NSTError naming `flag` otherwise."""
  try:
    numbers = tuple(float(v) for v in values)
  except ValueError:
    numbers = ()
  if len(numbers) != len(values) or not all(math.isfinite(v) for v in numbers):
    raise NSTError(f"{flag} expects comma-separated finite numbers, got {','.join(values)!r}")
  return numbers


def integers(values: list[str], flag: str) -> tuple[int, ...]:
  """A list flag's values as integers; NSTError naming `flag` otherwise."""
  try:
    return tuple(int(v) for v in values)
  except ValueError:
    raise NSTError(f"{flag} expects comma-separated integers, got {','.join(values)!r}") from None


def _demo():
  # The demo painting is generated with scipy.ndimage, which takes ~0.4 s to import: only runs without an image
  # path need it.
  from nst_jax import demo  # pylint: disable=import-outside-toplevel
  return demo


def load_content(path: str | None) -> np.ndarray:
  """The content image (default: the demo photo), refused when it is too small to carry any structure."""
  content = image_io.load_image(path, what="content image") if path else _demo().default_content()
  return image_io.check_min_size(content, what=f"content image {path!r}" if path else "content image")


def load_style(path: str) -> np.ndarray:
  """A style image, refused when it is too small to hold any texture (it would be blown up from a few pixels)."""
  return image_io.check_min_size(image_io.load_image(path, what="style image"), what=f"style image {path!r}")


def load_styles(paths: list[str] | None) -> list[np.ndarray]:
  """The style images at `paths` (`load_style`), or the generated demo painting without any."""
  return [load_style(p) for p in paths] if paths else [_demo().default_style()]


def load_masks(paths: list[str], *, height: int, width: int) -> list[np.ndarray]:
  """The --style_masks in content space, each refused when it selects nothing (black everywhere)."""
  masks = [guidance.load_mask(p, height=height, width=width) for p in paths]
  for path, mask in zip(paths, masks):
    if not mask.max(initial=0.0) >= MIN_MASK_COVER:
      raise NSTError(f"--style_masks {path!r} covers nothing (black everywhere): paint white where its style goes")
  return masks
