"""High-resolution style transfer: a seamless tiled loss, a coarse-to-fine pyramid, a memory model and resume.

**Tiled loss.** The image is cut into tiles of one fixed window shape, `tile + 2 * halo` pixels, taken from the
zero-padded whole image (so one compilation serves every tile of a scale). Every layer's output is multiplied by
the window's *validity* (1 on cells wholly inside the image): a window then computes what the whole image's
network computes, which zero-pads at the image border, up to the halo's edge. Every tile *owns* a `tile x tile`
interior; ownership is a smooth partition of unity over the image (linear ramps `2 * overlap` wide across each
interior border, exact at every layer's resolution because it is evaluated at each feature cell's centre), and a
tile contributes only its owned cells to

  * the GLOBAL Gram matrices, G_l = sum_tiles sum_cells w F F^T / sum w: the style loss is computed from
    whole-image statistics, exactly as the untiled loss would be if the tile features were exact, so tiles cannot
    drift towards different style statistics;
  * the content loss, sum_tiles sum_cells w * |F - P|^2 / (sum w * C), against per-tile content targets computed
    once per scale with the same tiling.

With Luan et al.'s segmentation maps (`content_seg`, `style_seg`) there is one Gram matrix per region r: the
content guide m_r is carried through the network once on the whole image (`guidance.masks_at_layers`), each tile
accumulates sum w m_r^2 F F^T with m_r cut to its window, and the sum is divided by the whole image's guide mass
(`guidance.gram_mass`, per `gram_normalization`), which is exactly `guidance.guided_gram` of the untiled features.

Total variation (and Luan et al.'s matting term, elementwise and 3x3-box work without VGG) is taken on the whole
image. The loss is therefore one ordinary differentiable function of the
whole image: `jax.grad` gives one global gradient (no per-tile updates to blend, no seams by construction) and
any optimizer, L-BFGS included, sees one image. Per tile, VGG runs under `jax.checkpoint` inside `lax.map`, so
only one batch of tiles' activations is live in the backward pass; the tile axis is sharded over a device `Mesh`
with `jax.shard_map` (partial Gram matrices are `psum`-ed), which also spans processes under `jax.distributed`.

**Halo.** A feature at layer l depends on a square of the input (its receptive field; radius 38 px for relu4_2 and
66 px for relu5_1 of VGG16/19-style stacks, see `receptive_radius`). Inside a tile window every convolution
zero-pads at the window edge, so features closer than the radius to the window edge differ from the untiled
network's. With `halo >= radius + overlap` every owned feature is exactly the untiled one, image borders included (the
validity masks), and the tiled loss and gradient equal the untiled ones to float rounding (tests). The *effective*
receptive field is much smaller than the theoretical one (activations are dominated by the central few pixels), so
a halo below the radius is a cheaper approximation; the default is the exact choice (the theoretical radius of the
deepest layer used, rounded up to that layer's stride), measured against smaller halos in tests/highres_test.py and
README.md.

**Pyramid.** `scale_sizes` lists long sides from `start_size` up to `size` by `scale_step`; every scale recomputes
the style targets (the style image resized to that scale's size times `--style_scale`) and the content targets, and
starts from the previous scale's result upsampled.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from nst_jax import atomic, color, guidance, image_io, losses, matting, segmentation, vgg
from nst_jax import stylize as gatys
from nst_jax.errors import NSTError
from nst_jax.weights import VGGWeights

AXIS = "tiles"
PRECISIONS = {"fp32": jnp.float32, "bf16": jnp.bfloat16}


# ---------------------------------------------------------------------------------------------------------------
# Geometry


def receptive_radius(arch: str, layer: str) -> int:
  """Half the theoretical receptive field (in input pixels) of one unit of `layer`, rounded up."""
  vgg.check_layers(arch, [layer])
  size, jump = 1, 1
  for name in vgg.layer_names(arch):
    if name.startswith("conv"):
      size += 2 * jump
    elif name.startswith("pool"):
      size += jump
      jump *= 2
    if name == layer:
      break
  return math.ceil((size - 1) / 2)


def layer_stride(arch: str, layer: str) -> int:
  """Input pixels per feature cell at `layer`: 2 ** (pools before it)."""
  order = vgg.layer_names(arch)
  return 2 ** sum(1 for name in order[: order.index(layer) + 1] if name.startswith("pool"))


def default_halo(arch: str, layers: Sequence[str], *, overlap: int = 0) -> int:
  """The exact halo: a tile owns cells up to `overlap` pixels beyond its interior, and those need the deepest
  layer's receptive radius of context, so radius + overlap, rounded up to a multiple of the deepest stride."""
  deepest = vgg.deepest_layer(arch, layers)
  stride = layer_stride(arch, deepest)
  return stride * math.ceil((receptive_radius(arch, deepest) + overlap) / stride)


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
  stride = layer_stride(arch, vgg.deepest_layer(arch, layers))
  if tile < 1:
    raise NSTError(f"--tile_size must be positive here, got {tile}")
  overlap = min(overlap, stride * math.ceil(min(tile, max(shape)) / stride) // 2)  # a ramp fits in half a tile
  if halo is None:
    halo = default_halo(arch, layers, overlap=overlap)
  if halo < 0:
    raise NSTError(f"--tile_halo must be >= 0, got {halo}")
  if overlap < 0:
    raise NSTError(f"--tile_overlap must be >= 0, got {overlap}")
  tile = stride * math.ceil(min(tile, max(shape)) / stride)
  halo = stride * math.ceil(halo / stride)
  if tile >= max(shape):
    halo, overlap = 0, 0  # one tile: the window is the (zero-padded) image itself, nothing to blend
  if overlap > halo:
    raise NSTError(f"--tile_overlap {overlap} must be at most the halo, --tile_halo ({halo})")
  if batch < 1:
    raise NSTError(f"--tile_batch must be at least 1, got {batch}")
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


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A one-axis mesh over `devices` (default: every device of every process)."""
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), (AXIS,))


# ---------------------------------------------------------------------------------------------------------------
# The tiled loss


@dataclasses.dataclass(frozen=True)
class TiledSpec:
  """Static description of one scale's tiled loss (hashable parts only; arrays go in `inputs`)."""

  arch: str
  style_layers: tuple[str, ...]
  content_layers: tuple[str, ...]   # empty: no content loss
  layer_weights: tuple[tuple[str, float], ...]  # style w_l
  content_weight: float
  style_weight: float
  tv_weight: float
  range_weight: float
  pooling: str
  dtype: Any
  matting_weight: float = 0.0       # > 0: inputs hold the content's `matting.precompute` fields


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


def tile_features(variables: Mapping[str, Any], tiles: jax.Array, valid: Mapping[int, jax.Array], *, arch: str,
                  outputs: Sequence[str], pooling: str, dtype: Any, preprocessing) -> dict[str, jax.Array]:
  """`vgg.VGG` on a batch of windows (B, S, S, 3) in [0, 1], with every layer's output multiplied by the windows'
  `validity` at its stride ({stride: (B, S/stride, S/stride)}), so that features equal the whole image's."""
  last = vgg.deepest_layer(arch, outputs)
  params = variables["params"]
  backward = variables.get(vgg.BACKWARD_KERNELS)
  wanted = set(outputs)
  stride = 1
  x = preprocessing.apply(tiles).astype(dtype) * valid[1][..., None].astype(dtype)
  feats = {}
  for name in vgg.layer_names(arch):
    if name.startswith("conv"):
      kernel = params[name]["kernel"].astype(dtype)
      if backward is not None:
        x = vgg._conv3x3_given_backward(  # pylint: disable=protected-access
            x, kernel, backward[name]["kernel"].astype(dtype))
      else:
        x = vgg.conv3x3(x, kernel)
      x = (x + params[name]["bias"].astype(dtype)) * valid[stride][..., None].astype(dtype)
    elif name.startswith("relu"):
      x = jax.nn.relu(x)
    else:
      stride *= 2
      x = vgg.pool(x, pooling) * valid[stride][..., None].astype(dtype)
    if name in wanted:
      feats[name] = x
    if name == last:
      break
  return feats


def strides_upto(arch: str, layers: Sequence[str]) -> tuple[int, ...]:
  return tuple(2 ** i for i in range(int(math.log2(layer_stride(arch, vgg.deepest_layer(arch, layers)))) + 1))


def _variables(inputs: Mapping[str, Any]) -> dict:
  variables = {"params": inputs["params"]}
  if vgg.BACKWARD_KERNELS in inputs:
    variables[vgg.BACKWARD_KERNELS] = inputs[vgg.BACKWARD_KERNELS]
  return variables


def _local_batches(x: jax.Array, batch: int) -> jax.Array:
  return x.reshape(x.shape[0] // batch, batch, *x.shape[1:])


def _weighted_gram(features: jax.Array, weights: jax.Array) -> jax.Array:
  """sum over the batch and cells of w F F^T, (B, h, w, C) features and (B, h, w) weights, in float32."""
  c = features.shape[-1]
  scaled = features * jnp.sqrt(weights)[..., None].astype(features.dtype)
  return losses.gram_product(scaled.reshape(-1, c))


def _region_grams(features: jax.Array, weights: jax.Array) -> jax.Array:
  """(R, C, C): `_weighted_gram` of (B, h, w, C) features under each region's (B, R, h, w) weights. Regions go one
  at a time (`lax.map`, rematerialised), so only one region's weighted copy of the features is live."""
  if weights.shape[1] == 1:
    return _weighted_gram(features, weights[:, 0])[None]
  return jax.lax.map(jax.checkpoint(lambda w: _weighted_gram(features, w)), jnp.moveaxis(weights, 1, 0))


def make_tiled_terms(spec: TiledSpec, grid: TileGrid, preprocessing, mesh: Mesh
                     ) -> Callable[[jax.Array, Mapping[str, Any]], dict[str, jax.Array]]:
  """`terms(image, inputs) -> {content, style, tv[, matting]}` (weighted), one differentiable function of the whole
  (H, W, 3) image. `inputs` (see `build_scale_problem`): params; style targets {layer: (R, C, C)} with region weights
  {layer: (R,)}, per-tile region weights 'style_weights' {layer: (tiles, R, h, w)} (ownership x guide^2) and the
  whole image's Gram divisors 'style_norm' {layer: (R,)}; with content, ownership {layer: (tiles, h, w)}, masses
  {layer: scalar} and per-tile targets; with matting, the content's `matting.precompute` fields."""
  layers = tuple(dict.fromkeys(spec.content_layers + spec.style_layers))
  features = functools.partial(tile_features, arch=spec.arch, outputs=layers, pooling=spec.pooling, dtype=spec.dtype,
                               preprocessing=preprocessing)
  layer_weight = dict(spec.layer_weights)
  batch = grid.batch

  def local_stats(variables, tiles, weights, targets, valid):
    def one_batch(args):
      tiles_b, weights_b, targets_b, valid_b = args
      style_w, content_w = weights_b
      feats = features(variables, tiles_b, valid_b)
      grams = {name: _region_grams(feats[name], style_w[name]) for name in spec.style_layers}
      content = {name: jnp.sum(content_w[name][..., None] * jnp.square(feats[name].astype(jnp.float32)
                                                                        - targets_b[name]))
                 for name in spec.content_layers}
      return grams, content

    # Remat: the backward pass recomputes one batch's activations instead of storing every tile's.
    per_batch = jax.lax.map(jax.checkpoint(one_batch),
                            (_local_batches(tiles, batch), jax.tree.map(lambda a: _local_batches(a, batch), weights),
                             jax.tree.map(lambda a: _local_batches(a, batch), targets),
                             jax.tree.map(lambda a: _local_batches(a, batch), valid)))
    return jax.lax.psum(jax.tree.map(lambda a: jnp.sum(a, axis=0), per_batch), AXIS)

  sharded_stats = jax.shard_map(local_stats, mesh=mesh, in_specs=(P(), P(AXIS), P(AXIS), P(AXIS), P(AXIS)),
                                out_specs=P())

  def terms(image: jax.Array, inputs: Mapping[str, Any]) -> dict[str, jax.Array]:
    tiles = extract_tiles(image, grid)
    weights = ({name: inputs["style_weights"][name] for name in spec.style_layers},
               {name: inputs["ownership"][name] for name in spec.content_layers})
    targets = {name: inputs["content"][name] for name in spec.content_layers}
    grams, content_sums = sharded_stats(_variables(inputs), tiles, weights, targets, inputs["valid"])
    out = {}
    if spec.content_layers:
      out["content"] = spec.content_weight * sum(
          inputs["content_weights"][name] * content_sums[name] / (inputs["mass"][name]
                                                                 * inputs["content"][name].shape[-1])
          for name in spec.content_layers)
    # Region r's Gram matrix: sum over tiles of ownership x guide_r^2 weighted F F^T, divided by the whole image's
    # guide mass (`guidance.gram_mass`): the untiled guided Gram matrix. Absent regions have region weight 0.
    out["style"] = spec.style_weight * sum(
        layer_weight[name] * jnp.sum(inputs["region_weights"][name] * losses.style_layer_loss(
            gram=grams[name] / inputs["style_norm"][name][:, None, None], target_gram=inputs["style"][name]))
        for name in spec.style_layers)
    out["tv"] = spec.tv_weight * losses.total_variation_loss(image=image)
    if spec.range_weight > 0:  # elementwise over the whole image: no VGG, nothing to tile
      out["range"] = spec.range_weight * losses.range_penalty(image=image)
    if spec.matting_weight > 0:
      # Not tiled: the matting energy is elementwise and 3x3-box work on the whole image (no VGG); its memory, ~92
      # floats per pixel (`estimate_peak_bytes`), is of the order of L-BFGS's whole-image history. Its 2-pixel
      # support (`nst_jax.matting`) would allow tiles with a 2-pixel halo if that ever mattered.
      out["matting"] = spec.matting_weight * matting.matting_energy(image=image, laplacian=inputs["matting"])
    return out

  return terms


def tiled_features(*, arch: str, layers: Sequence[str], pooling: str, dtype: Any, grid: TileGrid, preprocessing,
                   mesh: Mesh, guides: Mapping[str, np.ndarray] | None = None,
                   normalization: str = "squared_mass") -> Callable:
  """Jitted `(params, image) -> ({layer: per-tile features}, {layer: global Gram matrix})` (forward only): content
  targets and whole-image style statistics computed tile by tile.

  `guides` {layer: (R, h, w)}: the whole image's guides at each layer (`guidance.masks_at_layers`); the Gram
  matrices are then the (R, C, C) guided ones of `guidance.guided_gram` with `normalization`."""
  features = functools.partial(tile_features, arch=arch, outputs=tuple(layers), pooling=pooling, dtype=dtype,
                               preprocessing=preprocessing)
  owned = {name: ownership(grid, layer_stride(arch, name)) for name in layers}
  if guides is None:
    weights = {name: owned[name][:, None] for name in layers}
    mass = {name: np.full((1,), np.sum(owned[name]), np.float32) for name in layers}
  else:
    weights = {name: owned[name][:, None] * np.square(tile_windows(guides[name], grid, layer_stride(arch, name)))
               for name in layers}
    mass = {name: np.asarray(guidance.gram_mass(guides[name], channels=1, normalization=normalization))
            for name in layers}
  weights = {name: _put(w, NamedSharding(mesh, P(AXIS))) for name, w in weights.items()}
  valid = {s: _put(validity(grid, s), NamedSharding(mesh, P(AXIS))) for s in strides_upto(arch, layers)}
  tile_spec = NamedSharding(mesh, P(AXIS))

  def divisor(name: str, channels: int) -> np.ndarray:  # `guidance.gram_mass`: C * sum(m) for 'channels_mass'
    return mass[name] * (channels if guides is not None and normalization == "channels_mass" else 1)

  def local(params, tiles, weights, valid):
    def one_batch(args):
      tiles_b, weights_b, valid_b = args
      feats = features({"params": params}, tiles_b, valid_b)
      grams = {name: _region_grams(feats[name], weights_b[name]) for name in layers}
      return {name: feats[name].astype(jnp.float32) for name in layers}, grams
    feats, grams = jax.lax.map(one_batch, (_local_batches(tiles, grid.batch),
                                           jax.tree.map(lambda a: _local_batches(a, grid.batch), weights),
                                           jax.tree.map(lambda a: _local_batches(a, grid.batch), valid)))
    feats = jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), feats)
    return feats, jax.lax.psum(jax.tree.map(lambda a: jnp.sum(a, axis=0), grams), AXIS)

  sharded = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(AXIS), P(AXIS), P(AXIS)), out_specs=(P(AXIS), P()))

  @jax.jit
  def run(params, image, weights, valid):
    tiles = jax.lax.with_sharding_constraint(extract_tiles(image, grid), tile_spec)
    feats, grams = sharded(params, tiles, weights, valid)
    grams = {name: g / divisor(name, g.shape[-1])[:, None, None] for name, g in grams.items()}
    return feats, (grams if guides is not None else {name: g[0] for name, g in grams.items()})

  return lambda params, image: run(params, image, weights, valid)


# ---------------------------------------------------------------------------------------------------------------
# Memory model


def device_memory_bytes(device: jax.Device | None = None) -> int:
  """Memory of one device: the accelerator's limit, or for CPU the machine's physical memory."""
  device = device or jax.local_devices()[0]
  stats = device.memory_stats() if device.platform != "cpu" else None
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"])
  return gatys._physical_memory_bytes()  # pylint: disable=protected-access


def activation_values(arch: str, shape: tuple[int, int], layers: Sequence[str]) -> tuple[int, int]:
  """(sum, largest) of the activation sizes (values) of a VGG forward pass over an (H, W) input, up to the deepest
  of `layers`, input included."""
  h, w = shape
  order = vgg.layer_names(arch)
  widths = {name: shape[1][0] for name, shape in vgg.conv_shapes(arch).items()}
  channels, sizes = 3, [h * w * 3]
  for name in order[: order.index(vgg.deepest_layer(arch, layers)) + 1]:
    if name.startswith("conv"):
      channels = widths[name]
    elif name.startswith("pool"):
      h, w = h // 2, w // 2
    sizes.append(h * w * channels)
  return sum(sizes), max(sizes)


def estimate_peak_bytes(grid: TileGrid, *, arch: str, layers: Sequence[str], content_layers: Sequence[str] = (),
                        precision: str = "fp32", lbfgs_memory: int = 10, platform: str | None = None,
                        style_layers: Sequence[str] | None = None, regions: int = 1, matting: bool = False) -> int:
  """Predicted peak bytes of one device running one scale's tiled optimisation, above what the process holds
  before it (runtime, weights, targets).

  Tile work: the backward pass of one remat-ed batch holds every forward activation of its `grid.batch` windows
  plus the gradient flowing back and the one being produced (2 x the largest activation); executing it takes
  about 2 largest activations more than XLA's buffer assignment reports (convolution scratch; measured on XLA:CPU
  by running the compiled step alone: +75 MB over 368 MB of temporaries for a 384 px window, +18 MB over 114 MB
  for 16 windows of 152 px). Values take 4 bytes in fp32 and 2 in bf16 on accelerators; XLA:CPU computes bf16
  convolutions by converting to f32, so there both copies live (6 bytes, measured: bf16 saves no memory on CPU).
  Whole-image buffers: the image, its gradient and
  the optimizer's history (L-BFGS: 2 * memory images plus ~8 more for the line search), the padded image, every
  tile window and its gradient, the ownership maps (per region at the style layers, `style_layers`, default the
  layers that are not content layers) and the per-tile content targets. With `matting`, the untiled matting term:
  its precomputed fields (29 floats per pixel) and the intermediates of `matting.apply_laplacian` kept for the
  backward pass (9 shifted copies of the image, 9 residuals, the 3x3 z: 63 floats per pixel, counted from the
  code, not measured).
  """
  platform = platform or jax.local_devices()[0].platform
  bpv = 4 if precision == "fp32" else (6 if platform == "cpu" else 2)
  total, largest = activation_values(arch, grid.window, layers)
  tile_work = grid.batch * bpv * (total + 4 * largest)
  pixels = grid.height * grid.width * 3
  padded_pixels = (grid.ny * grid.tile_y + 2 * grid.halo) * (grid.nx * grid.tile_x + 2 * grid.halo) * 3
  image_buffers = 4 * (pixels * (2 * lbfgs_memory + 8) + padded_pixels)
  tiles = grid.padded_tiles * math.prod(grid.window) * 3 * 4 * 2
  per_layer = 0
  widths = dict((name, shape[1][0]) for name, shape in vgg.conv_shapes(arch).items())
  style_layers = [n for n in layers if n not in content_layers] if style_layers is None else style_layers
  for name in set(layers) | set(content_layers):
    cells = math.prod(w // layer_stride(arch, name) for w in grid.window) * grid.padded_tiles
    per_layer += 4 * cells * ((name in content_layers) + regions * (name in style_layers))  # ownership x guides
    if name in content_layers:
      conv = "conv" + name[len("relu"):] if name.startswith("relu") else _conv_before(arch, name)
      per_layer += 4 * cells * widths[conv]
  matting_bytes = 4 * (29 + 63) * grid.height * grid.width if matting else 0
  return int(tile_work + image_buffers + tiles + per_layer + matting_bytes)


def _conv_before(arch: str, name: str) -> str:
  order = vgg.layer_names(arch)
  return [n for n in order[: order.index(name) + 1] if n.startswith("conv")][-1]


def auto_tile_size(shape: tuple[int, int], *, budget_bytes: int, arch: str, layers: Sequence[str],
                   content_layers: Sequence[str] = (), halo: int | None = None, overlap: int = 0,
                   precision: str = "fp32", batch: int = 1, devices: int = 1, regions: int = 1,
                   matting: bool = False) -> int:
  """The largest tile (fewest tiles along the long side) whose predicted peak fits `budget_bytes`; `NSTError`
  when even the smallest tile does not fit (the whole-image buffers alone may not). `regions`, `matting`: see
  `estimate_peak_bytes`."""
  stride = layer_stride(arch, vgg.deepest_layer(arch, layers))
  long_side = max(shape)

  def peak(tile: int) -> int:
    grid = make_grid(shape, arch=arch, layers=layers, tile=tile, halo=halo, overlap=min(overlap, tile // 2),
                     batch=batch, devices=devices)
    return estimate_peak_bytes(grid, arch=arch, layers=layers, content_layers=content_layers, precision=precision,
                               regions=regions, matting=matting)

  smallest = stride * max(1, math.ceil(2 * overlap / stride))
  if peak(smallest) > budget_bytes:
    raise NSTError(f"a {shape[1]}x{shape[0]} image does not fit the memory budget of {budget_bytes / 2**30:.1f} GiB "
                   f"even in tiles; choose a smaller --size or raise --max_memory_gb")
  for n in range(1, math.ceil(long_side / smallest) + 1):
    tile = max(smallest, stride * math.ceil(math.ceil(long_side / n) / stride))
    if peak(tile) <= budget_bytes:
      return tile
  return smallest


# ---------------------------------------------------------------------------------------------------------------
# Problem construction for one scale


@dataclasses.dataclass(frozen=True)
class HighresConfig:
  """High-resolution settings on top of a `StylizeConfig` (whose `size` is the final long side)."""

  start_size: int = 0                  # first pyramid scale's long side; 0: a single scale
  scale_step: float = 2.0
  scale_iterations: tuple[int, ...] = ()   # per scale, coarse to fine; empty: `iterations_rule`
  tile_size: int = 0                   # 0: automatic from the memory budget
  tile_halo: int | None = None         # None: `default_halo`
  tile_overlap: int = 16
  tile_batch: int = 1
  max_memory_gb: float = 0.0           # 0: 80% of one device's memory
  precision: str = "fp32"
  checkpoint_dir: str | None = None
  checkpoint_every: int = 0            # also save every N iterations within a scale (0: only after each scale)


def validate_highres(hr: HighresConfig, config: gatys.StylizeConfig) -> None:
  if hr.start_size < 0 or (hr.start_size and hr.start_size < 16):
    raise NSTError(f"--start_size must be 0 (no pyramid) or at least 16, got {hr.start_size}")
  if hr.start_size > config.size:
    raise NSTError(f"--start_size {hr.start_size} is larger than --size {config.size}")
  if not (math.isfinite(hr.scale_step) and hr.scale_step > 1):
    raise NSTError(f"--scale_step must be a number > 1, got {hr.scale_step}")
  sizes = scale_sizes(config.size, hr.start_size, hr.scale_step)
  if hr.scale_iterations and len(hr.scale_iterations) != len(sizes):
    raise NSTError(f"--scale_iterations has {len(hr.scale_iterations)} entries for {len(sizes)} scales "
                   f"({','.join(map(str, sizes))})")
  if any(i < 1 for i in hr.scale_iterations):
    raise NSTError(f"--scale_iterations must all be at least 1, got {list(hr.scale_iterations)}")
  if hr.tile_size < 0:
    raise NSTError(f"--tile_size must be >= 0 (0: automatic), got {hr.tile_size}")
  if hr.tile_halo is not None and hr.tile_halo < 0:
    raise NSTError(f"--tile_halo must be >= 0, got {hr.tile_halo}")
  if hr.tile_overlap < 0:
    raise NSTError(f"--tile_overlap must be >= 0, got {hr.tile_overlap}")
  if hr.tile_batch < 1:
    raise NSTError(f"--tile_batch must be at least 1, got {hr.tile_batch}")
  if not (math.isfinite(hr.max_memory_gb) and hr.max_memory_gb >= 0):
    raise NSTError(f"--max_memory_gb must be >= 0 (0: automatic), got {hr.max_memory_gb}")
  if hr.precision not in PRECISIONS:
    raise NSTError(f"--precision must be one of {', '.join(PRECISIONS)}, got {hr.precision!r}")
  if hr.checkpoint_every < 0:
    raise NSTError(f"--checkpoint_every must be >= 0, got {hr.checkpoint_every}")
  if config.style_loss != "gram":
    raise NSTError("the high-resolution engine uses Gram matrices; --style_loss mrf is not supported with it")
  for flag, value in (("--laplacian_weight", config.laplacian_weight), ("--edge_weight", config.edge_weight)):
    if value:
      raise NSTError(f"{flag} is not supported by the high-resolution engine")


def scale_sizes(size: int, start_size: int, step: float) -> list[int]:
  """Long sides from `start_size` up to `size`, each `step` times the previous; the last is `size`."""
  if not start_size or start_size >= size:
    return [size]
  sizes = [start_size]
  while sizes[-1] * step < size * (1 - 1e-9):
    sizes.append(round(sizes[-1] * step))
  return sizes + [size]


def iterations_rule(iterations: int, sizes: Sequence[int]) -> list[int]:
  """Default iterations per scale: `iterations` at the first scale and, finer, fewer in proportion to the pixel
  count, so every scale costs about as much as the first (at least 1 each)."""
  return [max(1, math.ceil(iterations * (sizes[0] / s) ** 2)) for s in sizes]


@dataclasses.dataclass
class ScaleProblem:
  terms_fn: Callable
  inputs: dict[str, Any]
  grid: TileGrid
  content: np.ndarray | None


def build_scale_problem(*, content: np.ndarray | None, styles: Sequence[np.ndarray], weights: VGGWeights,
                        config: gatys.StylizeConfig, shape: tuple[int, int], tile: int, hr: HighresConfig,
                        mesh: Mesh, content_seg: np.ndarray | None = None,
                        style_seg: np.ndarray | None = None) -> ScaleProblem:
  """Targets and the tiled loss for one scale of long side `config.size` and output `shape`.

  `content_seg`/`style_seg` (both or neither, any size): Luan et al.'s colour-coded maps, matched into regions as in
  `stylize.build_problem` (`nst_jax.segmentation`). The content guides are carried through the network once on the
  whole image (`guidance.masks_at_layers`) and cut into per-tile windows; the style image's guided Gram targets
  are computed the same way, tiled, with the whole-image normalisation of `guidance.guided_gram`.
  """
  styles = gatys.prepare_styles(list(styles), content=content, config=config)
  segmented = content_seg is not None or style_seg is not None
  if segmented and (len(styles) != 1 or content is None):
    raise NSTError("segmentation maps (--content_seg/--style_seg) take a content image and one style image")
  use_content = content is not None and config.content_weight > 0
  style_sets = gatys.style_layer_sets(config, len(styles))
  style_layers = tuple(dict.fromkeys(name for s in style_sets for name in s))
  content_layers = tuple(config.content_layers) if use_content else ()
  layers = tuple(dict.fromkeys(content_layers + style_layers))
  dtype = PRECISIONS[hr.precision]
  devices = mesh.devices.size
  grid = make_grid(shape, arch=weights.arch, layers=layers, tile=tile, halo=hr.tile_halo,
                   overlap=hr.tile_overlap, batch=hr.tile_batch, devices=devices)
  source = gatys.normalized_params(weights, config.pooling) if config.normalize_network else weights.params
  replicated = NamedSharding(mesh, P())
  params = jax.tree.map(lambda a: _put(a, replicated), vgg.params_for(weights.arch, source, layers))
  inputs: dict[str, Any] = {"params": params}
  tile_sharding = NamedSharding(mesh, P(AXIS))
  owned = {name: ownership(grid, layer_stride(weights.arch, name)) for name in layers}
  inputs["ownership"] = {name: _put(owned[name], tile_sharding) for name in content_layers}
  inputs["valid"] = {s: _put(validity(grid, s), tile_sharding) for s in strides_upto(weights.arch, layers)}
  inputs["mass"] = {name: float(np.sum(owned[name])) for name in layers}
  net_content = None
  if content is not None:
    content = image_io.resize(content, *shape)
    net_content = color.luminance_image(content) if config.preserve_colors == "luminance" else content
  inputs["content"] = {}
  if use_content:
    feats_fn = tiled_features(arch=weights.arch, layers=content_layers, pooling=config.pooling, dtype=dtype,
                              grid=grid, preprocessing=weights.preprocessing, mesh=mesh)
    feats, grams = feats_fn(params, _put(np.asarray(net_content, np.float32), replicated))
    inputs["content"] = feats
    # mean(P^2) of the whole image's target is trace(G) / C of its plain Gram matrix: the untiled weights.
    inputs["content_weights"] = gatys.content_layer_weights(
        {name: jnp.trace(grams[name][0]) / grams[name].shape[-1] for name in content_layers},
        balance=config.content_layer_balance)

  scales = gatys._per_style(config.style_scale, len(styles), "--style_scale")  # pylint: disable=protected-access
  channels_mass = config.gram_normalization == "channels_mass"
  if segmented:
    style = image_io.resize_long_side(styles[0], max(16, round(config.size * scales[0])))
    seg = segmentation.match(content_seg, style_seg, content_shape=shape, style_shape=style.shape[:2])
    mask_pooling = config.mask_pooling or config.pooling
    carry = jax.jit(lambda m: guidance.masks_at_layers(weights.arch, m, style_layers, pooling=mask_pooling))
    # The style's guided Gram targets, tiled like the output (the style is resized to about the output's size).
    style_grid = make_grid(style.shape[:2], arch=weights.arch, layers=style_layers, tile=grid.tile, halo=grid.halo,
                           overlap=grid.overlap, batch=grid.batch, devices=devices)
    fn = tiled_features(arch=weights.arch, layers=style_layers, pooling=config.pooling, dtype=dtype, grid=style_grid,
                        preprocessing=weights.preprocessing, mesh=mesh,
                        guides={k: np.asarray(v) for k, v in carry(jnp.asarray(seg.style)).items()},
                        normalization=config.gram_normalization)
    inputs["style"] = fn(params, _put(np.asarray(style, np.float32), replicated))[1]
    # The content guides of the whole image at every style layer, computed once; tiles get windows of them.
    guides = carry(jnp.asarray(seg.content))
    inputs["region_weights"] = segmentation.region_means(guides)
    inputs["style_norm"] = {name: guidance.gram_mass(guides[name], channels=inputs["style"][name].shape[-1],
                                                     normalization=config.gram_normalization)
                            for name in style_layers}
    present = {name: guidance.present(guides[name]) for name in style_layers}
    style_weights = {name: owned[name][:, None] * np.square(tile_windows(
        np.asarray(guides[name]), grid, layer_stride(weights.arch, name))) for name in style_layers}
  else:
    cache: dict[int, dict[str, jax.Array]] = {}

    def style_grams(i: int) -> dict[str, jax.Array]:
      # The whole style image, resized for this scale, tiled like the output (one more compilation per style shape).
      if i not in cache:
        style = image_io.resize_long_side(styles[i], max(16, round(config.size * scales[i])))
        style_grid = make_grid(style.shape[:2], arch=weights.arch, layers=style_layers, tile=grid.tile,
                               halo=grid.halo, overlap=grid.overlap, batch=grid.batch, devices=devices)
        fn = tiled_features(arch=weights.arch, layers=style_layers, pooling=config.pooling, dtype=dtype,
                            grid=style_grid, preprocessing=weights.preprocessing, mesh=mesh)
        cache[i] = fn(params, _put(np.asarray(style, np.float32), replicated))[1]
      return cache[i]

    blend = gatys.blend_weights(config, len(styles))
    inputs["style"], inputs["region_weights"], inputs["style_norm"], present = {}, {}, {}, {}
    for name in style_layers:
      parts = [(b, style_grams(i)[name]) for i, b in enumerate(blend) if b > 0 and name in style_sets[i]]
      total = sum(b for b, _ in parts)
      target = (sum(b * g for b, g in parts) / total)[None]
      # One region of ones: 'channels_mass' divides the plain Gram matrix by C (as `stylize.build_problem` does).
      channels = target.shape[-1] if channels_mass else 1
      inputs["style"][name] = target / channels
      inputs["region_weights"][name] = jnp.ones((1,), jnp.float32)
      inputs["style_norm"][name] = jnp.full((1,), channels * inputs["mass"][name], jnp.float32)
      present[name] = jnp.ones((1,), bool)
    style_weights = {name: owned[name][:, None] for name in style_layers}
  if config.style_layer_balance == "target":
    inputs["region_weights"] = gatys.balance_by_target(inputs["style"], inputs["region_weights"])
  inputs["region_weights"] = {name: jnp.where(present[name], w, 0.0) for name, w in inputs["region_weights"].items()}
  inputs["style_weights"] = {name: _put(w.astype(np.float32), tile_sharding) for name, w in style_weights.items()}
  if config.matting_weight > 0:
    inputs["matting"] = matting.precompute(content, eps=config.matting_eps)  # the colour content is the guide
  inputs = jax.tree.map(lambda a: _put(np.asarray(a), replicated) if isinstance(a, jax.Array) and
                        not isinstance(a.sharding, NamedSharding) else a, inputs)
  inputs[vgg.BACKWARD_KERNELS] = jax.jit(vgg.backward_kernels, out_shardings=replicated)(params)
  layer_weights = gatys.style_layer_weights(config, style_layers)
  spec = TiledSpec(arch=weights.arch, style_layers=style_layers, content_layers=content_layers,
                   layer_weights=tuple(layer_weights.items()), content_weight=config.content_weight,
                   style_weight=config.style_weight, tv_weight=config.tv_weight, range_weight=config.range_weight,
                   pooling=config.pooling, dtype=dtype,
                   matting_weight=config.matting_weight if content is not None else 0.0)
  terms_fn = make_tiled_terms(spec, grid, weights.preprocessing, mesh)
  return ScaleProblem(terms_fn=terms_fn, inputs=inputs, grid=grid, content=content if content is None else
                      np.asarray(net_content if net_content is not None else content))


def region_count(content_seg: np.ndarray | None, style_seg: np.ndarray | None) -> int:
  """How many style regions `segmentation.match` makes of the maps (1 without maps), for the memory model."""
  if content_seg is None and style_seg is None:
    return 1
  return len(segmentation.match(content_seg, style_seg, content_shape=(16, 16), style_shape=(16, 16)).names)


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


def _put(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """A global array from the same host value on every process (also across processes under jax.distributed)."""
  array = np.asarray(array)
  return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


# ---------------------------------------------------------------------------------------------------------------
# Optimisation with checkpoints, and the pyramid


class Checkpointer:
  """Atomic resume state in a folder: `state.json` (scale, iteration, fingerprint of the request), the image of
  that scale after that many iterations (`image.npy`) and, mid-scale, the optimizer state (`opt_state.npz`)."""

  def __init__(self, folder: str | os.PathLike | None, fingerprint: str, *, writer: bool = True):
    self.folder = pathlib.Path(folder) if folder else None
    self.fingerprint = fingerprint
    self.writer = writer  # under jax.distributed only process 0 writes; every process reads

  def load(self) -> tuple[int, int, np.ndarray, dict[str, np.ndarray] | None] | None:
    if self.folder is None or not (self.folder / "state.json").exists():
      return None
    state = json.loads((self.folder / "state.json").read_text())
    if state.get("fingerprint") != self.fingerprint:
      raise NSTError(f"--checkpoint_dir {str(self.folder)!r} holds a run with other inputs or settings; "
                     f"use another folder or empty it")
    image = np.load(self.folder / state["image"])
    opt = None
    if state.get("opt_state"):
      with np.load(self.folder / state["opt_state"]) as f:
        opt = {k: f[k] for k in f.files}
    return int(state["scale"]), int(state["iteration"]), image, opt

  def save(self, scale: int, iteration: int, image: np.ndarray, opt_state: Any | None) -> None:
    if self.folder is None or not self.writer:
      return
    # New file names per save, then the state file is replaced: a kill at any moment leaves a consistent state.
    tag = f"{scale:02d}_{iteration:06d}"
    with atomic.atomic_write(self.folder / f"image_{tag}.npy") as f:
      np.save(f, np.asarray(image, np.float32))
    opt_name = None
    if opt_state is not None:
      opt_name = f"opt_{tag}.npz"
      with atomic.atomic_write(self.folder / opt_name) as f:
        np.savez(f, **{f"leaf{i:04d}": np.asarray(leaf) for i, leaf in enumerate(jax.tree.leaves(opt_state))})
    atomic.write_json(self.folder / "state.json", {"fingerprint": self.fingerprint, "scale": scale,
                                                   "iteration": iteration, "image": f"image_{tag}.npy",
                                                   "opt_state": opt_name})
    for old in self.folder.glob("*_*.np[yz]"):
      if tag not in old.name:
        old.unlink(missing_ok=True)


def fingerprint(*arrays: np.ndarray, settings: Mapping[str, Any]) -> str:
  digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
  for array in arrays:
    digest.update(np.ascontiguousarray(array, np.float32).tobytes())
  return digest.hexdigest()


def optimize_scale(problem: ScaleProblem, x0: np.ndarray, *, config: gatys.StylizeConfig, mesh: Mesh,
                   start: int = 0, opt_leaves: Mapping[str, np.ndarray] | None = None,
                   save: Callable[[int, np.ndarray, Any], None] | None = None, checkpoint_every: int = 0,
                   label: str = "", progress: bool = True) -> gatys.StylizeResult:
  """`config.iterations` optimizer steps of the tiled loss from x0 (or from iteration `start` with the saved
  optimizer state), one jitted chunk runner for the whole scale, NaN detection as in `stylize.optimize_image`;
  `save(iteration, image, opt_state)` every `checkpoint_every` iterations."""
  replicated = NamedSharding(mesh, P())
  optimizer = gatys.make_optimizer(config)
  x = _put(np.asarray(x0, np.float32), replicated)
  opt_state = jax.tree.map(jnp.copy, optimizer.init(x))
  if opt_leaves is not None:
    treedef = jax.tree.structure(opt_state)
    opt_state = jax.tree.unflatten(treedef, [opt_leaves[f"leaf{i:04d}"] for i in range(treedef.num_leaves)])
  opt_state = jax.tree.map(lambda a: _put(np.asarray(a), replicated), opt_state)
  return gatys.optimize_image(problem.terms_fn, problem.inputs, x, config=config, progress=progress, start=start,
                              opt_state=opt_state, on_checkpoint=save, checkpoint_every=checkpoint_every,
                              label=label)


@dataclasses.dataclass
class ScaleReport:
  size: int
  shape: tuple[int, int]
  iterations: int  # run at this scale, resumed ones included (fewer than planned when L-BFGS stalled)
  tile: int
  halo: int
  tiles: int
  predicted_bytes: int
  final_terms: dict[str, float]


def budget_bytes(hr: HighresConfig) -> int:
  return int(hr.max_memory_gb * 2**30) if hr.max_memory_gb > 0 else int(0.8 * device_memory_bytes())


def stylize_highres(*, content: np.ndarray | None, styles: Sequence[np.ndarray] | np.ndarray, weights: VGGWeights,
                    config: gatys.StylizeConfig, hr: HighresConfig, mesh: Mesh | None = None,
                    synthesis_shape: tuple[int, int] | None = None, progress: bool = True,
                    on_scale_done: Callable[[int, np.ndarray], None] | None = None,
                    content_seg: np.ndarray | None = None, style_seg: np.ndarray | None = None
                    ) -> tuple[gatys.StylizeResult, list[ScaleReport]]:
  """The pyramid of tiled optimisations; resumes from `hr.checkpoint_dir` when it holds this request's state.

  `on_scale_done(scale index, image)` runs after each scale's checkpoint is written (a test hook). `content_seg`,
  `style_seg`: segmentation maps as in `build_scale_problem`.
  """
  styles = gatys._as_list(styles)  # pylint: disable=protected-access
  gatys.validate(config, weights.arch, num_styles=len(styles), has_content=content is not None)
  validate_highres(hr, config)
  mesh = mesh or make_mesh()
  sizes = scale_sizes(config.size, hr.start_size, hr.scale_step)
  iterations = list(hr.scale_iterations) or iterations_rule(config.iterations, sizes)
  base_shape = content.shape if content is not None else (synthesis_shape or styles[0].shape)
  settings = {"config": dataclasses.asdict(config), "sizes": sizes, "iterations": iterations,
              "hr": {k: v for k, v in dataclasses.asdict(hr).items() if k not in ("checkpoint_dir",)},
              "devices": int(mesh.devices.size), "weights": weights.source_sha256}
  inputs_for_hash = ([content] if content is not None else []) + styles + [
      a for a in (content_seg, style_seg) if a is not None]
  ckpt = Checkpointer(hr.checkpoint_dir, fingerprint(*inputs_for_hash, settings=settings),
                      writer=jax.process_index() == 0)
  resume = ckpt.load()
  style_sets = gatys.style_layer_sets(config, len(styles))
  style_layers = tuple(dict.fromkeys(name for s in style_sets for name in s))
  use_content = content is not None and config.content_weight > 0
  content_layers = tuple(config.content_layers) if use_content else ()
  layers = tuple(dict.fromkeys(content_layers + style_layers))
  regions = region_count(content_seg, style_seg)
  matting_on = content is not None and config.matting_weight > 0
  budget = budget_bytes(hr)
  reports: list[ScaleReport] = []
  history: list[np.ndarray] = []
  initial_terms: dict[str, float] | None = None
  image: np.ndarray | None = None
  problem = None
  for k, (size, iters) in enumerate(zip(sizes, iterations)):
    shape = image_io.long_side_shape(base_shape, size)
    if resume is not None and (resume[0] > k or (resume[0] == k and resume[1] >= iters)):
      if resume[0] == k:
        image = resume[2]
      continue
    scale_config = dataclasses.replace(config, size=size, iterations=iters)
    tile = hr.tile_size or auto_tile_size(shape, budget_bytes=budget, arch=weights.arch, layers=layers,
                                          content_layers=content_layers, halo=hr.tile_halo, overlap=hr.tile_overlap,
                                          precision=hr.precision, batch=hr.tile_batch,
                                          devices=int(mesh.devices.size), regions=regions, matting=matting_on)
    problem = build_scale_problem(content=content, styles=styles, weights=weights, config=scale_config, shape=shape,
                                  tile=tile, hr=hr, mesh=mesh, content_seg=content_seg, style_seg=style_seg)
    start, opt_leaves = 0, None
    if resume is not None and resume[0] == k:
      start, x0, opt_leaves = resume[1], resume[2], resume[3]
    elif image is not None:
      x0 = image_io.resize(image, *shape)
    else:
      x0 = gatys.initial_image(config.init, content=problem.content, style=styles[0], seed=config.seed, shape=shape)
    result = optimize_scale(problem, x0, config=scale_config, mesh=mesh, start=start, opt_leaves=opt_leaves,
                            save=lambda i, x, s, k=k: ckpt.save(k, i, x, s), checkpoint_every=hr.checkpoint_every,
                            label=f"scale {k + 1}/{len(sizes)} {shape[1]}x{shape[0]} ", progress=progress)
    image = result.image
    ckpt.save(k, iters, image, None)
    if on_scale_done:
      on_scale_done(k, image)
    initial_terms = initial_terms or result.initial_terms
    history.append(result.loss_history)
    grid = problem.grid
    reports.append(ScaleReport(size=size, shape=shape, iterations=start + len(result.loss_history), tile=grid.tile,
                               halo=grid.halo, tiles=grid.num_tiles, predicted_bytes=estimate_peak_bytes(
                                   grid, arch=weights.arch, layers=layers, content_layers=content_layers,
                                   precision=hr.precision, regions=regions, matting=matting_on),
                               final_terms=result.final_terms))
  final = reports[-1].final_terms if reports else {}
  if config.preserve_colors == "luminance" and content is not None:
    resized = image_io.resize(content, *image.shape[:2])
    image = np.asarray(color.combine_luminance(stylized=image, content=resized), np.float32)
  return gatys.StylizeResult(image=image, loss_history=np.concatenate(history) if history else np.zeros((0,)),
                             initial_terms=initial_terms or {}, final_terms=final), reports


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


# ---------------------------------------------------------------------------------------------------------------
# Multi-host


def init_distributed(*, coordinator: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None) -> bool:
  """`jax.distributed.initialize` from the arguments or, where they are None, the environment variables
  NST_JAX_COORDINATOR (host:port of process 0), NST_JAX_NUM_PROCESSES and NST_JAX_PROCESS_ID. Returns False (and
  does nothing) without a coordinator. Must run before JAX computes anything. On CPU the collectives go over gloo."""
  coordinator = coordinator or os.environ.get("NST_JAX_COORDINATOR") or None
  if not coordinator:
    return False
  try:
    if num_processes is None:
      num_processes = int(os.environ.get("NST_JAX_NUM_PROCESSES", "0"))
    if process_id is None:
      process_id = int(os.environ.get("NST_JAX_PROCESS_ID", "-1"))
  except ValueError as e:
    raise NSTError(f"NST_JAX_NUM_PROCESSES / NST_JAX_PROCESS_ID must be integers: {e}") from None
  if num_processes < 1:
    raise NSTError(f"--num_processes must be at least 1 with --coordinator_address, got {num_processes}")
  if not 0 <= process_id < num_processes:
    raise NSTError(f"--process_id must lie in [0, {num_processes}), got {process_id}")
  host, sep, port = coordinator.rpartition(":")
  if not sep or not host or not port.isdigit():
    raise NSTError(f"--coordinator_address must be host:port, got {coordinator!r}")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
  return True
