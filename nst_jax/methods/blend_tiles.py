"""Overlapping tiles blended with linear ramps, for the feed-forward methods' large images.

Every tile is processed alone (with statistics of the whole image passed in) and the outputs are averaged with
weights that ramp linearly across each overlap, so no seam shows.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from nst_jax.errors import NSTError


@dataclasses.dataclass(frozen=True)
class Tiling:
  """How a large content image is cut into tiles.

  Attributes:
    tile: side of the square tiles in px (a multiple of 8).
    overlap: overlap of neighbouring tiles in px (a multiple of 8).
    thumbnail: long side of the thumbnail whose statistics normalise every tile."""

  tile: int = 1024
  overlap: int = 128
  thumbnail: int = 1024

  def __post_init__(self) -> None:
    if self.tile < 32 or self.tile % 8:
      raise NSTError(f"--tile_size must be a multiple of 8 and at least 32 px, got {self.tile}")
    if self.overlap < 0 or self.overlap % 8 or 2 * self.overlap >= self.tile:
      raise NSTError(f"tile overlap must be a multiple of 8 below half the tile ({self.tile}), got {self.overlap}")
    if self.thumbnail < 16:
      raise NSTError(f"thumbnail size must be at least 16 px, got {self.thumbnail}")


def tiling_for_budget(max_pixels: int) -> Tiling:
  """Tiles of at most `max_pixels` (a multiple of 8 on each side) overlapping by 1/8, thumbnail of the same size."""
  tile = max(64, int(math.sqrt(max_pixels)) // 8 * 8)
  return Tiling(tile=tile, overlap=max(8, tile // 8 // 8 * 8), thumbnail=tile)


def tile_count(shape: tuple[int, int], tiling: Tiling) -> int:
  """How many tiles `stylize` cuts an (H, W) content into with `tiling`."""
  h, w = shape
  th, tw = min(tiling.tile, h + (-h) % 8), min(tiling.tile, w + (-w) % 8)
  return len(tile_starts(max(h, th), th, tiling.overlap)) * len(tile_starts(max(w, tw), tw, tiling.overlap))


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
  """Start offsets of tiles of `tile` px covering `length` px with at least `overlap` px of overlap.

  The last tile is flush with the end."""
  if length <= tile:
    return [0]
  step = tile - overlap
  starts = list(range(0, length - tile, step)) + [length - tile]
  return sorted(set(starts))


def ramp(length: int, overlap: int, first: bool, last: bool) -> np.ndarray:
  """Blending weights along one tile axis: linear ramps over the overlaps with neighbours, 1 elsewhere."""
  w = np.ones(length, np.float32)
  if overlap > 0:
    ramp = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
    if not first:
      w[:overlap] = ramp
    if not last:
      w[-overlap:] = ramp[::-1]
  return w


def tile_windows(shape: tuple[int, int], tile_shape: tuple[int, int],
                 overlap: int) -> list[tuple[tuple[slice, slice], np.ndarray]]:
  """The tiles of `tile_shape` (each side at most the image's) covering an image of `shape` with at least `overlap`
  px of overlap: for each, its (rows, columns) window and its (th, tw) blending weights, linear ramps across the
  overlaps normalised so that every pixel's weights over all tiles sum to 1."""
  h, w = shape
  th, tw = tile_shape
  ys, xs = tile_starts(h, th, overlap), tile_starts(w, tw, overlap)
  ramps = [(i, j, ramp(th, overlap, i == 0, i == len(ys) - 1)[:, None]
            * ramp(tw, overlap, j == 0, j == len(xs) - 1)[None, :]) for i in range(len(ys)) for j in range(len(xs))]
  norm = np.zeros((h, w), np.float32)
  for i, j, r in ramps:
    norm[ys[i]:ys[i] + th, xs[j]:xs[j] + tw] += r
  out = []
  for i, j, r in ramps:
    window = (slice(ys[i], ys[i] + th), slice(xs[j], xs[j] + tw))
    out.append((window, r / norm[window]))
  return out


def window_bounds(t: int, count: int, window: int) -> tuple[int, int]:
  """[start, stop) of the `window` frames centred on frame t of `count`, shifted to stay inside (0: all frames): the
  part of a clip whose statistics stand for frame t's, as the whole image's stand for a tile's."""
  if window <= 0 or window >= count:
    return 0, count
  start = min(max(0, t - window // 2), count - window)
  return start, start + window
