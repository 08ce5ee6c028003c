"""Tile geometry of the high-resolution engine: halos, strides, grids, ownership and validity maps.

The image is cut into tiles of one fixed window shape, `tile + 2 * halo` pixels, taken from the zero-padded whole
image (so one compilation serves every tile of a scale). Every tile *owns* a `tile x tile` interior; ownership is
a smooth partition of unity over the image (linear ramps `2 * overlap` wide across each interior border, exact at
every layer's resolution because it is evaluated at each feature cell's centre). Every layer's output in a window
is multiplied by the window's *validity* (1 on cells wholly inside the image), so a window computes what the whole
image's network computes, which zero-pads at the image border, up to the halo's edge.

**Halo.** A feature at layer l depends on a square of the input (its receptive field, `vgg.receptive_radius`).
Inside a tile window every convolution zero-pads at the window edge, so features closer than the radius to the
window edge differ from the untiled network's. With `halo >= radius + overlap` every owned feature is exactly the
untiled one, image borders included (the validity masks), and the tiled loss and gradient equal the untiled ones to
float rounding (tests). The *effective*
receptive field is much smaller than the theoretical one (activations are dominated by the central few pixels), so
a halo below the radius is a cheaper approximation; the default is the exact choice (the theoretical radius of the
deepest layer used, rounded up to that layer's stride).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.errors import NSTError
from nst_jax.models import vgg


def default_halo(arch: str, layers: Sequence[str], *, overlap: int = 0) -> int:
  """The exact halo: a tile owns cells up to `overlap` pixels beyond its interior, and those need the deepest
  layer's receptive radius of context, so radius + overlap, rounded up to a multiple of the deepest stride."""
  deepest = vgg.deepest_layer(arch, layers)
  stride = vgg.layer_stride(arch, deepest)
  return stride * math.ceil((vgg.receptive_radius(arch, deepest) + overlap) / stride)


@dataclasses.dataclass(frozen=True)
class TileGrid:
  """Tiles of one scale: `ny x nx` owned interiors of `tile` pixels, windows of `tile + 2 * halo` pixels, padded
  to a multiple of `devices * batch` tiles with dummy tiles that own nothing."""

  height: int
  width: int
  tile: int
  halo: int
  overlap: int
  stride: int   # pixels per cell at the deepest layer: tile, halo are multiples of it
  batch: int    # tiles per device per step
  devices: int

  @property
  def tile_y(self) -> int:  # a side shorter than the tile gets a shorter window (one tile along it)
    return min(self.tile, self.stride * math.ceil(self.height / self.stride))

  @property
  def tile_x(self) -> int:
    return min(self.tile, self.stride * math.ceil(self.width / self.stride))

  @property
  def window(self) -> tuple[int, int]:
    return self.tile_y + 2 * self.halo, self.tile_x + 2 * self.halo

  @property
  def ny(self) -> int:
    return math.ceil(self.height / self.tile_y)

  @property
  def nx(self) -> int:
    return math.ceil(self.width / self.tile_x)

  @property
  def num_tiles(self) -> int:
    return self.ny * self.nx

  @property
  def padded_tiles(self) -> int:
    group = self.devices * self.batch
    return group * math.ceil(self.num_tiles / group)

  def origins(self) -> np.ndarray:
    """(padded_tiles, 2) window origins in the padded image (top-left = image pixel (-halo, -halo))."""
    real = [(ty * self.tile_y, tx * self.tile_x) for ty in range(self.ny) for tx in range(self.nx)]
    return np.asarray(real + [(0, 0)] * (self.padded_tiles - len(real)), np.int32)

  def padding(self) -> tuple[tuple[int, int], tuple[int, int]]:
    return ((self.halo, self.ny * self.tile_y - self.height + self.halo),
            (self.halo, self.nx * self.tile_x - self.width + self.halo))


def make_grid(shape: tuple[int, int], *, arch: str, layers: Sequence[str], tile: int, halo: int | None = None,
              overlap: int = 0, batch: int = 1, devices: int = 1) -> TileGrid:
  """A grid for an (H, W) image; `tile` and `halo` are rounded up to the deepest layer's stride so that pooled
  grids of all tiles line up with the whole image's. `halo=None`: `default_halo`."""
  stride = vgg.layer_stride(arch, vgg.deepest_layer(arch, layers))
  if tile < 1:
    raise NSTError(f"HighresConfig.tile_size must be positive here, got {tile}")
  overlap = min(overlap, stride * math.ceil(min(tile, max(shape)) / stride) // 2)  # a ramp fits in half a tile
  if halo is None:
    halo = default_halo(arch, layers, overlap=overlap)
  if halo < 0:
    raise NSTError(f"HighresConfig.tile_halo must be >= 0, got {halo}")
  if overlap < 0:
    raise NSTError(f"HighresConfig.tile_overlap must be >= 0, got {overlap}")
  tile = stride * math.ceil(min(tile, max(shape)) / stride)
  halo = stride * math.ceil(halo / stride)
  if tile >= max(shape):
    halo, overlap = 0, 0  # one tile: the window is the (zero-padded) image itself, nothing to blend
  if overlap > halo:
    raise NSTError(f"HighresConfig.tile_overlap {overlap} must be at most the halo, HighresConfig.tile_halo ({halo})")
  if batch < 1:
    raise NSTError(f"HighresConfig.tile_batch must be at least 1, got {batch}")
  return TileGrid(height=shape[0], width=shape[1], tile=tile, halo=halo, overlap=overlap, stride=stride,
                  batch=batch, devices=devices)


def _ownership_1d(centres: np.ndarray, k: int, n: int, tile: int, overlap: int, extent: int,
                  half: float) -> np.ndarray:
  """Weight of tile k (of n along an axis) of cells at global coordinates `centres` +- `half`; sums to 1 over k
  for the cells that lie wholly inside [0, extent) (the cells the whole image's feature maps have)."""
  def ramp(s):
    return np.clip((s + overlap) / (2 * overlap), 0, 1) if overlap > 0 else (s >= 0).astype(np.float64)
  lo = 1.0 if k == 0 else ramp(centres - k * tile)
  hi = 0.0 if k == n - 1 else ramp(centres - (k + 1) * tile)
  return (lo - hi) * ((centres - half >= 0) & (centres + half <= extent))


def ownership(grid: TileGrid, stride: int) -> np.ndarray:
  """(padded_tiles, window/stride, window/stride) ownership weights at a layer of `stride`: a partition of unity
  over the image's cells (every cell that lies wholly in the image gets total weight 1), zero for dummy tiles."""
  cy, cx = grid.window[0] // stride, grid.window[1] // stride
  local_y = (np.arange(cy) + 0.5) * stride - grid.halo  # cell centres relative to the tile's interior origin
  local_x = (np.arange(cx) + 0.5) * stride - grid.halo
  out = np.zeros((grid.padded_tiles, cy, cx), np.float32)
  for i, (ty, tx) in enumerate((ty, tx) for ty in range(grid.ny) for tx in range(grid.nx)):
    wy = _ownership_1d(local_y + ty * grid.tile_y, ty, grid.ny, grid.tile_y, grid.overlap, grid.height, stride / 2)
    wx = _ownership_1d(local_x + tx * grid.tile_x, tx, grid.nx, grid.tile_x, grid.overlap, grid.width, stride / 2)
    out[i] = np.outer(wy, wx)
  return out


def extract_tiles(image: jax.Array, grid: TileGrid) -> jax.Array:
  """(H, W, 3) -> (padded_tiles, window, window, 3) windows of the zero-padded image (differentiable)."""
  padded = jnp.pad(image, (*grid.padding(), (0, 0)))  # the zeros are masked out by `validity` anyway
  origins = jnp.asarray(grid.origins())
  wy, wx = grid.window
  return jax.vmap(lambda o: jax.lax.dynamic_slice(padded, (o[0], o[1], 0), (wy, wx, image.shape[-1])))(origins)


def validity(grid: TileGrid, stride: int) -> np.ndarray:
  """(padded_tiles, window/stride, window/stride) 1 where a cell of that stride lies wholly inside the image, else
  0. Multiplying every layer's output by it makes each window behave exactly like the whole image's network, which
  zero-pads at the image border and floors odd sizes when pooling."""
  out = np.zeros((grid.padded_tiles, grid.window[0] // stride, grid.window[1] // stride), np.float32)
  for i, (ty, tx) in enumerate((ty, tx) for ty in range(grid.ny) for tx in range(grid.nx)):
    y = np.arange(out.shape[1]) * stride - grid.halo + ty * grid.tile_y
    x = np.arange(out.shape[2]) * stride - grid.halo + tx * grid.tile_x
    out[i] = np.outer((y >= 0) & (y + stride <= grid.height), (x >= 0) & (x + stride <= grid.width))
  return out


def tile_windows(maps: np.ndarray, grid: TileGrid, stride: int) -> np.ndarray:
  """(R, h, w) whole-image maps at a layer of `stride` (one value per cell of the whole image's feature map) ->
  (padded_tiles, R, window/stride, window/stride) per-tile windows with the geometry of `ownership`/`validity`,
  zero outside the image and for dummy tiles."""
  maps = np.asarray(maps, np.float32)
  r, h, w = maps.shape
  cy, cx = grid.window[0] // stride, grid.window[1] // stride
  halo = grid.halo // stride
  padded = np.zeros((r, max((grid.ny - 1) * grid.tile_y // stride + cy, halo + h),
                     max((grid.nx - 1) * grid.tile_x // stride + cx, halo + w)), np.float32)
  padded[:, halo:halo + h, halo:halo + w] = maps
  out = np.zeros((grid.padded_tiles, r, cy, cx), np.float32)
  for i, (oy, ox) in enumerate(grid.origins()[: grid.num_tiles]):
    out[i] = padded[:, oy // stride: oy // stride + cy, ox // stride: ox // stride + cx]
  return out


def seam_ratio(image: np.ndarray, tile: int, band: int = 2) -> float:
  """Mean gradient magnitude of the gray image within `band` px of an interior tile border ÷ elsewhere (~1: no
  seam; a visible seam raises it)."""
  gray = np.asarray(image, np.float64).mean(axis=-1)
  mag = np.hypot(*np.gradient(gray))
  h, w = gray.shape
  near = np.zeros((h, w), bool)
  for k in range(tile, h, tile):
    near[max(0, k - band): k + band, :] = True
  for k in range(tile, w, tile):
    near[:, max(0, k - band): k + band] = True
  return float(mag[near].mean() / mag[~near].mean())
