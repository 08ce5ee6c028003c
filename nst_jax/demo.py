"""Demo images that need no download and no third-party image in the repository.

The content is the Grace Hopper photograph that ships with matplotlib (`mpl-data/sample_data`). The style is
generated here: a "swirl painting", i.e. line-integral convolution of noise along a field of vortices (the look
of brush strokes following a flow), coloured with a night-sky palette. It is deterministic for a given seed.
"""

from __future__ import annotations

import pathlib

import numpy as np
from scipy import ndimage

from nst_jax.io import image_io
from nst_jax.errors import NSTError


def default_content_path() -> pathlib.Path:
  """The path of matplotlib's Grace Hopper sample photo; NSTError without matplotlib."""
  try:
    from matplotlib import cbook
  except ImportError:
    raise NSTError("the demo content image ships with matplotlib: pip install matplotlib, or pass --content") \
        from None
  return pathlib.Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def default_content() -> np.ndarray:
  """The demo content photo as an (H, W, 3) float32 RGB array in [0, 1]."""
  return image_io.load_image(default_content_path(), what="demo content image")


def _vortex_field(size: int, rng: np.random.Generator, num_vortices: int = 9):
  """Sum of Rankine-like vortices with random centres, radii and spin, plus a gentle drift."""
  y, x = np.mgrid[0:size, 0:size].astype(np.float64) / size
  vx = np.full_like(x, 0.15)
  vy = np.full_like(x, 0.05)
  for _ in range(num_vortices):
    cx, cy = rng.uniform(0, 1, 2)
    radius = rng.uniform(0.05, 0.2)
    spin = rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.5)
    dx, dy = x - cx, y - cy
    r2 = dx * dx + dy * dy
    strength = spin * np.exp(-r2 / (2 * radius**2))
    vx += -dy / radius * strength
    vy += dx / radius * strength
  norm = np.hypot(vx, vy) + 1e-9
  return vx / norm, vy / norm, np.hypot(vx, vy)


def _line_integral_convolution(noise, vx, vy, length: int) -> np.ndarray:
  """Average of the noise along streamlines traced `length` steps forwards and backwards (Cabral & Leedom 1993)."""
  size = noise.shape[0]
  total = noise.copy()
  for direction in (1.0, -1.0):
    py, px = np.mgrid[0:size, 0:size].astype(np.float64)
    for _ in range(length):
      sy = ndimage.map_coordinates(vy, [py, px], order=1, mode="wrap")
      sx = ndimage.map_coordinates(vx, [py, px], order=1, mode="wrap")
      py = (py + direction * sy) % size
      px = (px + direction * sx) % size
      total += ndimage.map_coordinates(noise, [py, px], order=1, mode="wrap")
  return total / (2 * length + 1)


def swirl_painting(size: int = 384, seed: int = 0) -> np.ndarray:
  """A generated (size, size, 3) float32 RGB painting in [0, 1]: swirling brush strokes in blues and yellows."""
  rng = np.random.default_rng(seed)
  vx, vy, speed = _vortex_field(size, rng)
  # Coarse noise gives strokes a few pixels wide rather than single-pixel hatching.
  noise = ndimage.zoom(rng.uniform(0, 1, (size // 3 + 1, size // 3 + 1)), 3, order=0)[:size, :size]
  strokes = _line_integral_convolution(noise, vx, vy, length=max(8, size // 24))
  strokes = (strokes - strokes.mean()) / (strokes.std() + 1e-9)
  # Colour: a night-sky ramp driven by the (smoothed) flow speed, brightened along strokes.
  tone = ndimage.gaussian_filter(np.log1p(speed), size / 40)
  tone = (tone - tone.min()) / (np.ptp(tone) + 1e-9)
  palette = np.array([[0.05, 0.10, 0.30], [0.10, 0.25, 0.55], [0.30, 0.50, 0.75], [0.85, 0.80, 0.45],
                      [0.98, 0.85, 0.25]])
  positions = np.linspace(0, 1, len(palette))
  level = np.clip(tone + 0.12 * strokes, 0, 1)
  rgb = np.stack([np.interp(level, positions, palette[:, c]) for c in range(3)], axis=-1)
  rgb *= (1.0 + 0.18 * strokes)[..., None]
  return np.clip(rgb, 0, 1).astype(np.float32)


def default_style() -> np.ndarray:
  """The demo style: `swirl_painting()` at its default size and seed."""
  return swirl_painting()


def mosaic_painting(size: int = 256, seed: int = 0, *, cell: float = 16.0) -> np.ndarray:
  """A generated (size, size, 3) float32 stained-glass painting: warm cells with dark lead lines.

  Reds, oranges and ochres; a second demo style that differs from `swirl_painting` in colour, shape and scale of its
  strokes."""
  rng = np.random.default_rng(seed)
  count = max(4, int((size / cell) ** 2))
  centers = rng.uniform(0, size, (count, 2))
  y, x = np.mgrid[0:size, 0:size].astype(np.float64)
  d = (y[..., None] - centers[:, 0]) ** 2 + (x[..., None] - centers[:, 1]) ** 2
  order = np.argsort(d, axis=-1)
  nearest, second = order[..., 0], order[..., 1]
  d1 = np.sqrt(np.take_along_axis(d, nearest[..., None], -1)[..., 0])
  d2 = np.sqrt(np.take_along_axis(d, second[..., None], -1)[..., 0])
  palette = np.array([[0.80, 0.15, 0.10], [0.95, 0.45, 0.10], [0.85, 0.65, 0.20], [0.55, 0.10, 0.15],
                      [0.95, 0.80, 0.55]])
  colours = palette[rng.integers(0, len(palette), count)] * rng.uniform(0.8, 1.1, (count, 1))
  rgb = colours[nearest]
  lead = np.clip((d2 - d1) / 2.0, 0, 1)[..., None]  # dark lines where two cells meet
  return np.clip(rgb * (0.15 + 0.85 * lead), 0, 1).astype(np.float32)


def camera_pan(image: np.ndarray, *, frames: int, size: tuple[int, int],
               velocity: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
  """A clip of a camera panning over `image`: frame t is the (height, width) = `size` window of `image` whose top
  left corner is at (x, y) = o + t v, v = `velocity` in px per frame, o chosen so every window fits. Sub-pixel
  positions are cubic-spline samples of `image`.

  The motion is known exactly: a scene point seen at pixel p in frame t is at p - v in frame t+1, so the forward
  flow (frame t -> t+1, in px, (dx, dy)) is -v everywhere and the backward flow (t+1 -> t) is +v; the strip of
  frame t+1 within |v| px of the side the camera moves towards is new (disoccluded).

  Returns:
    (frames float32 [frames, height, width, 3] in [0, 1], forward flow float32 [2] = (dx, dy) = -v).
  """
  height, width = size
  vx, vy = velocity
  span_x, span_y = abs(vx) * (frames - 1), abs(vy) * (frames - 1)
  if width + span_x > image.shape[1] - 1 or height + span_y > image.shape[0] - 1:
    raise NSTError(f"a {width}x{height} window moving {frames - 1} x ({vx}, {vy}) px does not fit in the "
                   f"{image.shape[1]}x{image.shape[0]} image")
  x0 = (image.shape[1] - 1 - width - span_x) / 2 + (span_x if vx < 0 else 0.0)
  y0 = (image.shape[0] - 1 - height - span_y) / 2 + (span_y if vy < 0 else 0.0)
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
  clip = np.empty((frames, height, width, 3), np.float32)
  splines = [ndimage.spline_filter(image[..., c].astype(np.float64), order=3, mode="nearest") for c in range(3)]
  for t in range(frames):
    coords = [yy + y0 + t * vy, xx + x0 + t * vx]
    for c in range(3):
      clip[t, ..., c] = ndimage.map_coordinates(splines[c], coords, order=3, mode="nearest", prefilter=False)
  return np.clip(clip, 0.0, 1.0), np.array([-vx, -vy], np.float32)
