"""Memory: what a device and the machine have, what one VGG pass or one tiled scale needs, and the largest tile
that fits a budget. `check_memory` refuses an untiled request that cannot fit before any array is made."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import jax

from nst_jax.errors import NSTError
from nst_jax.highres.tiling import TileGrid, make_grid
from nst_jax.models import vgg


def physical_memory_bytes() -> int:
  """The machine's physical memory (0 where the platform does not say)."""
  try:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError, AttributeError):
    return 0


def check_memory(shape: tuple[int, int], arch: str, layers: Sequence[str]) -> None:
  """Refuses a request whose VGG forward + backward pass cannot fit in this machine's memory."""
  need = vgg.estimate_training_bytes(arch, shape, layers)
  have = physical_memory_bytes()
  if have and need > 0.8 * have:
    raise NSTError(f"a {shape[1]}x{shape[0]} image needs about {need / 2**30:.1f} GiB for one VGG pass and "
                   f"this machine has {have / 2**30:.1f} GiB; choose a smaller StylizeConfig.size")


def budget_bytes(max_memory_gb: float) -> int:
  """`HighresConfig.max_memory_gb` in bytes; 0 means 80% of one device's memory."""
  return int(max_memory_gb * 2**30) if max_memory_gb > 0 else int(0.8 * device_memory_bytes())


def device_memory_bytes(device: jax.Device | None = None) -> int:
  """Memory of one device: the accelerator's limit, or for CPU the machine's physical memory."""
  device = device or jax.local_devices()[0]
  stats = device.memory_stats() if device.platform != "cpu" else None
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"])
  return physical_memory_bytes()


def estimate_peak_bytes(grid: TileGrid, *, arch: str, layers: Sequence[str], content_layers: Sequence[str] = (),
                        precision: str = "fp32", lbfgs_memory: int = 10, platform: str | None = None,
                        style_layers: Sequence[str] | None = None, regions: int = 1, matting: bool = False) -> int:
  """Predicted peak bytes of one device running one scale's tiled optimisation, above what the process holds
  before it (runtime, weights, targets).

  Tile work: the backward pass of one remat-ed batch holds every forward activation of its `grid.batch` windows
  plus the gradient flowing back and the one being produced (2 x the largest activation); executing it takes
  about 2 largest activations more than XLA's buffer assignment reports (convolution scratch). Values take 4 bytes
  in fp32 and 2 in bf16 on accelerators; XLA:CPU computes bf16 convolutions by converting to f32, so there both
  copies live (6 bytes). Whole-image buffers: the image, its gradient and
  the optimizer's history (L-BFGS: 2 * memory images plus ~8 more for the line search), the padded image, every
  tile window and its gradient, the ownership maps (per region at the style layers, `style_layers`, default the
  layers that are not content layers) and the per-tile content targets. With `matting`, the untiled matting term:
  its precomputed fields (29 floats per pixel) and the intermediates of `matting.apply_laplacian` kept for the
  backward pass (9 shifted copies of the image, 9 residuals, the 3x3 z: 63 floats per pixel).
  """
  platform = platform or jax.local_devices()[0].platform
  bpv = 4 if precision == "fp32" else (6 if platform == "cpu" else 2)
  total, largest = vgg.activation_values(arch, grid.window, layers)
  tile_work = grid.batch * bpv * (total + 4 * largest)
  pixels = grid.height * grid.width * 3
  padded_pixels = (grid.ny * grid.tile_y + 2 * grid.halo) * (grid.nx * grid.tile_x + 2 * grid.halo) * 3
  image_buffers = 4 * (pixels * (2 * lbfgs_memory + 8) + padded_pixels)
  tiles = grid.padded_tiles * math.prod(grid.window) * 3 * 4 * 2
  per_layer = 0
  widths = dict((name, shape[1][0]) for name, shape in vgg.conv_shapes(arch).items())
  style_layers = [n for n in layers if n not in content_layers] if style_layers is None else style_layers
  for name in set(layers) | set(content_layers):
    cells = math.prod(w // vgg.layer_stride(arch, name) for w in grid.window) * grid.padded_tiles
    per_layer += 4 * cells * ((name in content_layers) + regions * (name in style_layers))  # ownership x guides
    if name in content_layers:
      conv = "conv" + name[len("relu"):] if name.startswith("relu") else vgg.conv_before(arch, name)
      per_layer += 4 * cells * widths[conv]
  matting_bytes = 4 * (29 + 63) * grid.height * grid.width if matting else 0
  return int(tile_work + image_buffers + tiles + per_layer + matting_bytes)


def auto_tile_size(shape: tuple[int, int], *, budget_bytes: int, arch: str, layers: Sequence[str],
                   content_layers: Sequence[str] = (), halo: int | None = None, overlap: int = 0,
                   precision: str = "fp32", batch: int = 1, devices: int = 1, regions: int = 1,
                   matting: bool = False) -> int:
  """The largest tile (fewest tiles along the long side) whose predicted peak fits `budget_bytes`; `NSTError`
  when even the smallest tile does not fit (the whole-image buffers alone may not). `regions`, `matting`: see
  `estimate_peak_bytes`."""
  stride = vgg.layer_stride(arch, vgg.deepest_layer(arch, layers))
  long_side = max(shape)

  def peak(tile: int) -> int:
    grid = make_grid(shape, arch=arch, layers=layers, tile=tile, halo=halo, overlap=min(overlap, tile // 2),
                     batch=batch, devices=devices)
    return estimate_peak_bytes(grid, arch=arch, layers=layers, content_layers=content_layers, precision=precision,
                               regions=regions, matting=matting)

  smallest = stride * max(1, math.ceil(2 * overlap / stride))
  if peak(smallest) > budget_bytes:
    raise NSTError(f"a {shape[1]}x{shape[0]} image does not fit the memory budget of {budget_bytes / 2**30:.1f} GiB "
                   f"even in tiles; choose a smaller StylizeConfig.size or raise HighresConfig.max_memory_gb")
  for n in range(1, math.ceil(long_side / smallest) + 1):
    tile = max(smallest, stride * math.ceil(math.ceil(long_side / n) / stride))
    if peak(tile) <= budget_bytes:
      return tile
  return smallest
