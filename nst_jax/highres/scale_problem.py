"""One scale of the high-resolution engine: its tile grid, targets (tiled content features, whole-image style
Gram matrices, per-tile weights) and the tiled loss, ready for the optimizer."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from nst_jax.errors import NSTError
from nst_jax.highres.distributed import AXIS, put
from nst_jax.highres.highres_config import PRECISIONS, HighresConfig
from nst_jax.highres.tiled_loss import TiledSpec, make_tiled_terms, tiled_features
from nst_jax.highres.tiling import TileGrid, make_grid, ownership, tile_windows, validity
from nst_jax.io import image_io
from nst_jax.losses import color, guidance, segmentation
from nst_jax.models import vgg
from nst_jax.objective import layer_balance
from nst_jax.objective.images import prepare_styles
from nst_jax.objective.network import masks_at_layers, normalized_params
from nst_jax.objective.plan import ObjectivePlan
from nst_jax.objective.registry import TermSources
from nst_jax.weights.format import VGGWeights


@dataclasses.dataclass
class ScaleProblem:
  """One scale's tiled loss, ready for `pyramid.optimize_scale`."""

  terms_fn: Callable
  inputs: dict[str, Any]
  grid: TileGrid
  content: np.ndarray | None


def build_scale_problem(*, content: np.ndarray | None, styles: Sequence[np.ndarray], weights: VGGWeights,
                        plan: ObjectivePlan, shape: tuple[int, int], tile: int, hr: HighresConfig,
                        mesh: Mesh, content_seg: np.ndarray | None = None,
                        style_seg: np.ndarray | None = None) -> ScaleProblem:
  """The tiled problem of `plan` at one scale: targets, per-tile weights and the tiled loss.

  Args:
    content, styles: (H, W, 3) images in [0, 1] (content None: texture synthesis), resized here: the content to
      `shape`, each style to `plan.config.size` times its style scale.
    plan: the resolved objective at this scale (`ObjectivePlan.at_size`); the scale's long side is its size.
    shape: the output's (H, W) at this scale.
    tile: the tile interior in pixels; the halo, overlap, batch and precision come from `hr`.
    mesh: the devices the tiles are sharded over.
    content_seg, style_seg: Luan et al.'s colour-coded maps (both or neither, any size), matched into regions as in
      the whole-image problem (`nst_jax.losses.segmentation`). The content guides are carried through the network
      once on the whole image (`guidance.masks_at_layers`) and cut into per-tile windows; the style's guided Gram
      targets are computed the same way, tiled, with the whole-image normalisation of `guidance.guided_gram`.

  Returns:
    The `ScaleProblem`; its `content` is the image the network sees of the content (its luminance with
    luminance-only transfer).
  """
  config = plan.config
  raw_styles, styles = list(styles), prepare_styles(list(styles), content=content, config=config)
  segmented = content_seg is not None or style_seg is not None
  if segmented and (len(styles) != 1 or content is None):
    raise NSTError("segmentation maps (`content_seg`/`style_seg`) take a content image and one style image")
  style_sets, style_layers, content_layers = plan.style_sets, plan.style_layers, plan.content_layers
  layers = tuple(dict.fromkeys(content_layers + style_layers))
  dtype = PRECISIONS[hr.precision]
  devices = mesh.devices.size
  grid = make_grid(shape, arch=weights.arch, layers=layers, tile=tile, halo=hr.tile_halo,
                   overlap=hr.tile_overlap, batch=hr.tile_batch, devices=devices)
  source = normalized_params(weights, config.pooling) if config.normalize_network else weights.params
  replicated = NamedSharding(mesh, P())
  params = jax.tree.map(lambda a: put(a, replicated), vgg.params_for(weights.arch, source, layers))
  inputs: dict[str, Any] = {"params": params}
  tile_sharding = NamedSharding(mesh, P(AXIS))
  owned = {name: ownership(grid, vgg.layer_stride(weights.arch, name)) for name in layers}
  inputs["ownership"] = {name: put(owned[name], tile_sharding) for name in content_layers}
  inputs["valid"] = {s: put(validity(grid, s), tile_sharding) for s in vgg.strides_upto(weights.arch, layers)}
  inputs["mass"] = {name: float(np.sum(owned[name])) for name in layers}
  net_content = None
  if content is not None:
    content = image_io.resize(content, *shape)
    net_content = color.luminance_image(content) if config.preserve_colors == "luminance" else content
  inputs["content"] = {}
  if content_layers:
    feats_fn = tiled_features(arch=weights.arch, layers=content_layers, pooling=config.pooling, dtype=dtype,
                              grid=grid, preprocessing=weights.preprocessing, mesh=mesh)
    feats, grams = feats_fn(params, put(np.asarray(net_content, np.float32), replicated))
    inputs["content"] = feats
    # mean(P^2) of the whole image's target is trace(G) / C of its plain Gram matrix: the untiled weights.
    inputs["content_weights"] = layer_balance.content_layer_weights(
        {name: jnp.trace(grams[name]) / grams[name].shape[-1] for name in content_layers},
        balance=config.content_layer_balance)

  scales = plan.style_scales
  channels_mass = config.gram_normalization == "channels_mass"
  if segmented:
    style = image_io.resize_long_side(styles[0], max(16, round(config.size * scales[0])))
    seg = segmentation.match(content_seg, style_seg, content_shape=shape, style_shape=style.shape[:2])
    mask_pooling = config.mask_pooling or config.pooling
    carry = lambda m: masks_at_layers(masks=m, arch=weights.arch, layers=tuple(style_layers),  # noqa: E731
                                            pooling=mask_pooling)
    # The style's guided Gram targets, tiled like the output (the style is resized to about the output's size).
    style_grid = make_grid(style.shape[:2], arch=weights.arch, layers=style_layers, tile=grid.tile, halo=grid.halo,
                           overlap=grid.overlap, batch=grid.batch, devices=devices)
    fn = tiled_features(arch=weights.arch, layers=style_layers, pooling=config.pooling, dtype=dtype, grid=style_grid,
                        preprocessing=weights.preprocessing, mesh=mesh,
                        guides={k: np.asarray(v) for k, v in carry(jnp.asarray(seg.style)).items()},
                        normalization=config.gram_normalization)
    inputs["style"] = fn(params, put(np.asarray(style, np.float32), replicated))[1]
    # The content guides of the whole image at every style layer, computed once; tiles get windows of them.
    guides = carry(jnp.asarray(seg.content))
    inputs["region_weights"] = segmentation.region_means(guides)
    inputs["style_norm"] = {name: guidance.gram_mass(guides[name], channels=inputs["style"][name].shape[-1],
                                                     normalization=config.gram_normalization)
                            for name in style_layers}
    present = {name: guidance.present(guides[name]) for name in style_layers}
    style_weights = {name: owned[name][:, None] * np.square(tile_windows(
        np.asarray(guides[name]), grid, vgg.layer_stride(weights.arch, name))) for name in style_layers}
  else:
    def style_grams(images: list[np.ndarray], i: int) -> dict[str, jax.Array]:
      # The whole style image, resized for this scale, tiled like the output (one more compilation per style shape).
      style = image_io.resize_long_side(images[i], max(16, round(config.size * scales[i])))
      style_grid = make_grid(style.shape[:2], arch=weights.arch, layers=style_layers, tile=grid.tile,
                             halo=grid.halo, overlap=grid.overlap, batch=grid.batch, devices=devices)
      fn = tiled_features(arch=weights.arch, layers=style_layers, pooling=config.pooling, dtype=dtype,
                          grid=style_grid, preprocessing=weights.preprocessing, mesh=mesh)
      return fn(params, put(np.asarray(style, np.float32), replicated))[1]

    def blended_targets(grams: list[dict[str, jax.Array] | None]) -> dict[str, jax.Array]:
      out = {}
      for name in style_layers:
        parts = [(b, grams[i][name]) for i, b in enumerate(blend) if b > 0 and name in style_sets[i]]
        # One region of ones: 'channels_mass' divides the plain Gram matrix by C (as `gatys.build_problem` does).
        target = (sum(b * g for b, g in parts) / sum(b for b, _ in parts))[None]
        out[name] = target / (target.shape[-1] if channels_mass else 1)
      return out

    blend = plan.blend
    grams_of = lambda images: [style_grams(images, i) if b > 0 else None for i, b in enumerate(blend)]  # noqa: E731
    grams = grams_of(styles)
    inputs["style"], inputs["region_weights"], inputs["style_norm"], present = blended_targets(grams), {}, {}, {}
    for name in style_layers:
      channels = inputs["style"][name].shape[-1] if channels_mass else 1
      inputs["region_weights"][name] = jnp.ones((1,), jnp.float32)
      inputs["style_norm"][name] = jnp.full((1,), channels * inputs["mass"][name], jnp.float32)
      present[name] = jnp.ones((1,), bool)
    style_weights = {name: owned[name][:, None] for name in style_layers}
  if config.style_layer_balance == "target":
    inputs["region_weights"] = layer_balance.balance_by_target(inputs["style"], inputs["region_weights"])
  elif config.preserve_colors == "luminance" and not segmented:
    gain = layer_balance.luminance_style_gain(colour_targets=blended_targets(grams_of(raw_styles)),
                                              luminance_targets=inputs["style"],
                                              region_weights=inputs["region_weights"],
                                              layer_weights=plan.layer_weights)
    inputs["region_weights"] = {name: w * gain for name, w in inputs["region_weights"].items()}
  if plan.balance_layer_sets:  # several styles, so not segmented
    gains = layer_balance.layer_set_gains(style_grams=grams, style_sets=style_sets,
                                          layer_weights=plan.layer_weights)
    inputs["region_weights"] = layer_balance.apply_layer_set_gains(inputs["region_weights"], gains=gains,
                                                                   style_sets=style_sets, region_style_weights=[blend])
  inputs["region_weights"] = {name: jnp.where(present[name], w, 0.0) for name, w in inputs["region_weights"].items()}
  inputs["style_weights"] = {name: put(w.astype(np.float32), tile_sharding) for name, w in style_weights.items()}
  sources = TermSources(content=content, net_content=net_content, config=config)
  for term in plan.image_terms:
    if term.prepare is not None:
      inputs.update(term.prepare(sources))
  inputs = jax.tree.map(lambda a: put(np.asarray(a), replicated) if isinstance(a, jax.Array) and
                        not isinstance(a.sharding, NamedSharding) else a, inputs)
  inputs[vgg.BACKWARD_KERNELS] = jax.jit(vgg.backward_kernels, out_shardings=replicated)(params)
  spec = TiledSpec(arch=weights.arch, style_layers=style_layers, content_layers=content_layers,
                   layer_weights=tuple(plan.layer_weights.items()), content_weight=plan.term_weights["content"],
                   style_weight=plan.term_weights["style"], pooling=config.pooling, dtype=dtype,
                   image_terms=tuple((term, plan.term_weights[term.name]) for term in plan.image_terms))
  terms_fn = make_tiled_terms(spec, grid, weights.preprocessing, mesh)
  return ScaleProblem(terms_fn=terms_fn, inputs=inputs, grid=grid, content=content if content is None else
                      np.asarray(net_content if net_content is not None else content))


def region_count(content_seg: np.ndarray | None, style_seg: np.ndarray | None) -> int:
  """How many style regions `segmentation.match` makes of the maps (1 without maps), for the memory model."""
  if content_seg is None and style_seg is None:
    return 1
  return len(segmentation.match(content_seg, style_seg, content_shape=(16, 16), style_shape=(16, 16)).names)

