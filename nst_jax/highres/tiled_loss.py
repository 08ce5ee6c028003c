"""The tiled loss: one differentiable function of the whole image, computed tile by tile.

A tile contributes only its owned cells (`tiling.ownership`) to

  * the GLOBAL Gram matrices, G_l = sum_tiles sum_cells w F F^T / sum w: the style loss is computed from
    whole-image statistics, exactly as the untiled loss would be if the tile features were exact, so tiles cannot
    drift towards different style statistics;
  * the content loss, sum_tiles sum_cells w * |F - P|^2 / (sum w * C), against per-tile content targets computed
    once per scale with the same tiling.

With Luan et al.'s segmentation maps (`content_seg`, `style_seg`) there is one Gram matrix per region r: the
content guide m_r is carried through the network once on the whole image (`guidance.masks_at_layers`), each tile
accumulates sum w m_r^2 F F^T with m_r cut to its window, and the sum is divided by the whole image's guide mass
(`guidance.gram_mass`, per `gram_normalization`), which is exactly `guidance.guided_gram` of the untiled features.

The image terms (`registry.IMAGE_TERMS`: total variation, Luan et al.'s matting term; elementwise and small-window
work without VGG) are taken on the whole image. The loss is therefore one ordinary differentiable function of the
whole image: `jax.grad` gives one global gradient (no per-tile updates to blend, no seams by construction) and
any optimizer, L-BFGS included, sees one image. Per tile, VGG runs under `jax.checkpoint` inside `lax.map`, so
only one batch of tiles' activations is live in the backward pass; the tile axis is sharded over a device `Mesh`
with `jax.shard_map` (partial Gram matrices are `psum`-ed), which also spans processes under `jax.distributed`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from nst_jax import losses
from nst_jax.highres.distributed import AXIS, put
from nst_jax.highres.tiling import TileGrid, extract_tiles, ownership, tile_windows, validity
from nst_jax.losses import guidance
from nst_jax.models import vgg
from nst_jax.objective.registry import ImageTerm


@dataclasses.dataclass(frozen=True)
class TiledSpec:
  """Static description of one scale's tiled loss (hashable parts only; arrays go in `inputs`)."""

  arch: str
  style_layers: tuple[str, ...]
  content_layers: tuple[str, ...]   # empty: no content loss
  layer_weights: tuple[tuple[str, float], ...]  # style w_l
  content_weight: float
  style_weight: float
  pooling: str
  dtype: Any
  # The image terms that are on (`registry.ImageTerm`, all supporting tiling) and their weights; their inputs
  # (`ImageTerm.prepare`) are in `inputs`.
  image_terms: tuple[tuple[ImageTerm, float], ...] = ()



def tile_features(variables: Mapping[str, Any], tiles: jax.Array, valid: Mapping[int, jax.Array], *, arch: str,
                  outputs: Sequence[str], pooling: str, dtype: Any, preprocessing) -> dict[str, jax.Array]:
  """`vgg.VGG` on a batch of windows (B, S, S, 3) in [0, 1], with every layer's output multiplied by the windows'
  `validity` at its stride ({stride: (B, S/stride, S/stride)}), so that features equal the whole image's."""
  model = vgg.VGG(arch, tuple(outputs), pooling=pooling, dtype=dtype)
  return model.apply(dict(variables), preprocessing.apply(tiles) * valid[1][..., None], valid=valid)


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


@functools.lru_cache(maxsize=16)
def make_tiled_terms(spec: TiledSpec, grid: TileGrid, preprocessing, mesh: Mesh
                     ) -> Callable[[jax.Array, Mapping[str, Any]], dict[str, jax.Array]]:
  """The tiled loss: `terms(image, inputs) -> {content, style, and the image terms}` (weighted), one differentiable
  function of the whole (H, W, 3) image, its tiles sharded over `mesh`.

  `inputs` (see `scale_problem.build_scale_problem`): params; style targets {layer: (R, C, C)} with region weights
  {layer: (R,)}, per-tile region weights 'style_weights' {layer: (tiles, R, h, w)} (ownership x guide^2) and the
  whole image's Gram divisors 'style_norm' {layer: (R,)}; with content, ownership {layer: (tiles, h, w)}, masses
  {layer: scalar} and per-tile targets; and the image terms' inputs.

  Remembered for equal arguments (the last 16): runs and resumed runs of the same structure get the same function,
  and with it the compiled loop of `nst_jax.optim.make_chunk_runner`, instead of tracing it again."""
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
    # Image terms are elementwise or small-window work on the whole image (no VGG), so they are not tiled; the
    # matting energy's memory, ~92 floats per pixel (`estimate_peak_bytes`), is of the order of L-BFGS's
    # whole-image history.
    for term, weight in spec.image_terms:
      out[term.name] = weight * term.loss(image, inputs, spec)
    return out

  return terms


def tiled_features(*, arch: str, layers: Sequence[str], pooling: str, dtype: Any, grid: TileGrid, preprocessing,
                   mesh: Mesh, guides: Mapping[str, np.ndarray] | None = None,
                   normalization: str = "squared_mass") -> Callable:
  """Jitted `(params, image) -> ({layer: per-tile features}, {layer: global Gram matrix})` (forward only): content
  targets and whole-image style statistics computed tile by tile.

  `guides` {layer: (R, h, w)}: the whole image's guides at each layer (`guidance.masks_at_layers`); the Gram
  matrices are then the (R, C, C) guided ones of `guidance.guided_gram` with `normalization`."""
  layers = tuple(layers)
  owned = {name: ownership(grid, vgg.layer_stride(arch, name)) for name in layers}
  if guides is None:
    weights = {name: owned[name][:, None] for name in layers}
    mass = {name: np.full((1,), np.sum(owned[name]), np.float32) for name in layers}
  else:
    weights = {name: owned[name][:, None] * np.square(tile_windows(guides[name], grid, vgg.layer_stride(arch, name)))
               for name in layers}
    mass = {name: np.asarray(guidance.gram_mass(guides[name], channels=1, normalization=normalization), np.float32)
            for name in layers}
  weights = {name: put(w, NamedSharding(mesh, P(AXIS))) for name, w in weights.items()}
  valid = {s: put(validity(grid, s), NamedSharding(mesh, P(AXIS))) for s in vgg.strides_upto(arch, layers)}
  run = _tiled_features_runner(arch, layers, pooling, dtype, grid, preprocessing, mesh, guided=guides is not None,
                               channels_mass=guides is not None and normalization == "channels_mass")
  return lambda params, image: run(params, image, weights, valid, mass)


@functools.lru_cache(maxsize=16)
def _tiled_features_runner(arch: str, layers: tuple[str, ...], pooling: str, dtype: Any, grid: TileGrid,
                           preprocessing, mesh: Mesh, *, guided: bool, channels_mass: bool) -> Callable:
  """The jitted `run(params, image, weights, valid, mass)` of `tiled_features`, one per structure (remembered, so
  that every scale problem and resumed run of the same structure reuses its compilation). `mass` {layer: (R,)}:
  the guide masses; with `channels_mass` each Gram matrix is also divided by its channel count
  (`guidance.gram_mass`)."""
  features = functools.partial(tile_features, arch=arch, outputs=layers, pooling=pooling, dtype=dtype,
                               preprocessing=preprocessing)
  tile_spec = NamedSharding(mesh, P(AXIS))

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
  def run(params, image, weights, valid, mass):
    tiles = jax.lax.with_sharding_constraint(extract_tiles(image, grid), tile_spec)
    feats, grams = sharded(params, tiles, weights, valid)
    grams = {name: g / (mass[name] * (g.shape[-1] if channels_mass else 1))[:, None, None]
             for name, g in grams.items()}
    return feats, (grams if guided else {name: g[0] for name, g in grams.items()})

  return run

