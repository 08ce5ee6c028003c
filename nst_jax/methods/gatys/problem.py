"""The whole-image problem of a plan: every target of Gatys et al.'s loss computed once, and the loss terms.

Everything the loss needs (VGG parameters, content features, style targets, masks, loss weights) is an input of
the jitted step, never a baked-in constant, so one compilation serves every run of the same structure
(`nst_jax.objective.terms.LossTerms`). The image is optimised as RGB in [0, 1] and the weight set's preprocessing
applied inside the loss, so one code path serves Caffe-style and torchvision-style weights.

Style targets are organised in regions (`nst_jax.objective.images.Region`): one region without masks, one per
style with style masks, each split into depth bins with a depth map. Masks are carried through the network and
each region's Gram matrix is computed from its masked features (guided Gram matrices).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import losses
from nst_jax.highres.memory import check_memory
from nst_jax.io import image_io
from nst_jax.losses import color, guidance, octaves, segmentation, structure
from nst_jax.models import vgg
from nst_jax.objective.images import Region, build_regions, initial_image, needs_guidance, prepare_styles
from nst_jax.objective.layer_balance import (apply_layer_set_gains, balance_by_target, content_layer_weights,
                                             layer_set_gains, luminance_style_gain)
from nst_jax.objective.network import masks_at_layers, network_features, normalized_params
from nst_jax.objective.plan import ObjectivePlan
from nst_jax.objective.registry import TermSources
from nst_jax.objective.style_terms import gram_targets
from nst_jax.objective.terms import loss_weights, make_loss_terms
from nst_jax.weights.format import VGGWeights


@dataclasses.dataclass
class Problem:
  """Everything one optimisation needs: the loss terms, their jit-argument inputs and the starting image."""

  terms_fn: Callable[[jax.Array, Mapping[str, Any]], dict[str, jax.Array]]
  inputs: dict[str, Any]
  x0: np.ndarray
  content: np.ndarray | None  # resized, in colour (for luminance-only post-processing)
  plan: ObjectivePlan


def problem_from_plan(plan: ObjectivePlan, *, content: np.ndarray | None, styles: Sequence[np.ndarray],
                      weights: VGGWeights, style_masks: Sequence[np.ndarray] | None = None,
                      depth: np.ndarray | None = None, hed_weights: VGGWeights | None = None,
                      synthesis_shape: tuple[int, int] | None = None, content_seg: np.ndarray | None = None,
                      style_seg: np.ndarray | None = None, guides: Mapping[str, Any] | None = None) -> Problem:
  """The whole-image problem of `plan`: the images resized, every target computed, the loss terms and the start.

  Args:
    plan: the resolved objective (`nst_jax.objective.plan.resolve_plan`), made for these images (number of
      styles, content or none, masks, depth, segmentation).
    content: (H, W, 3) in [0, 1], resized to `plan.config.size` on its long side; None for texture synthesis.
    styles: (H, W, 3) images in [0, 1], each resized to the size times its style scale (and depth bin's scale).
    weights: the VGG weights; `hed_weights` serve the edge term when `weights` lack HED side outputs.
    style_masks: one (H, W) mask per style, any size, in content space; `depth` likewise ((H, W), brighter =
      nearer).
    synthesis_shape: the output's shape without content (default: the first style's aspect at the size).
    content_seg, style_seg: Luan et al.'s colour-coded segmentation maps of the content and the single style (both
      or neither, any size); each matched colour is a region whose target is the guided Gram matrix of the style's
      pixels of that colour (`nst_jax.losses.segmentation`), weighted by the region's content-mask mean.
    guides: per-image arrays at the output's size for the image terms that take them
      (`nst_jax.objective.registry.TermSources.guides`, e.g. `TEMPORAL_GUIDES`); inputs of the jitted step like
      every target, so frames of one size share one compilation.

  Returns:
    The `Problem`: `terms_fn(x, inputs)` gives the weighted loss terms of an image `x`.
  """
  config = plan.config
  has_content = content is not None
  segmented = content_seg is not None or style_seg is not None
  style_loss = plan.style_loss
  style_sets, style_layers, octave_layers = plan.style_sets, plan.style_layers, plan.octave_layers
  # The network's layers on the image itself, and those the octave layers take from downsampled copies.
  all_layers = tuple(dict.fromkeys(plan.content_layers + octaves.at_factor(style_layers, 1)))
  octave_bases = tuple(dict.fromkeys(octaves.split(n)[0] for n in octave_layers))
  all_layers = all_layers or octave_bases  # texture synthesis from octave layers alone
  network_layers = all_layers + octave_bases
  shape = (image_io.long_side_shape(content.shape, config.size) if has_content
           else synthesis_shape or image_io.long_side_shape(styles[0].shape, config.size))
  check_memory(shape, weights.arch, network_layers)
  hed = None
  if any(term.name == "edge" for term in plan.image_terms):
    hed = hed_weights if hed_weights is not None else weights
    structure.require_hed(hed)

  if has_content:
    content = image_io.resize(content, *shape)
  raw_styles, styles = styles, prepare_styles(styles, content=content, config=config)
  net_content = color.luminance_image(content) if config.preserve_colors == "luminance" else content
  scales = plan.style_scales
  if segmented:
    style_shape = image_io.long_side_shape(styles[0].shape, max(16, round(config.size * scales[0])))
    seg = segmentation.match(content_seg, style_seg, content_shape=shape, style_shape=style_shape)
    regions = [Region(mask=m, weight=1.0, style_weights=(1.0,), scale=1.0) for m in seg.content]
  else:
    regions = build_regions(plan, shape, style_masks=style_masks, depth=depth)

  model = vgg.VGG(weights.arch, all_layers, pooling=config.pooling)
  octave_model = vgg.VGG(weights.arch, octave_bases, pooling=config.pooling) if octave_layers else None
  source_params = normalized_params(weights, config.pooling) if config.normalize_network else weights.params
  params = jax.tree.map(jnp.asarray, vgg.params_for(weights.arch, source_params, network_layers))

  def features(params: Mapping, image) -> dict[str, jax.Array]:
    """The network's layers of `image`, and the octave layers of its downsampled copies."""
    out = dict(network_features(model, weights.preprocessing, params, image))
    if octave_model is not None:
      net = lambda img, layers: network_features(octave_model, weights.preprocessing, params, img)  # noqa: E731
      out.update(octaves.features(net, jnp.asarray(image), octave_layers))
    return out
  inputs: dict[str, Any] = {"params": params, "loss_weights": loss_weights(plan)}
  if plan.content_layers:
    content_feats = network_features(model, weights.preprocessing, params, jnp.asarray(net_content))
    inputs["content"] = {name: content_feats[name] for name in plan.content_layers}
    inputs["content_weights"] = content_layer_weights(
        {name: jnp.mean(jnp.square(t)) for name, t in inputs["content"].items()}, balance=config.content_layer_balance)

  def features_of(images: Sequence[np.ndarray]) -> Callable[[int, float], dict[str, jax.Array]]:
    """style_features(i, factor): the features of images[i] at its scale times `factor`, computed once."""
    cache: dict[tuple[int, float], dict[str, jax.Array]] = {}

    def style_features(i: int, factor: float) -> dict[str, jax.Array]:
      key = (i, round(scales[i] * factor, 6))
      if key not in cache:
        long_side = max(16, round(config.size * key[1]))
        check_memory(image_io.long_side_shape(images[i].shape, long_side), weights.arch, network_layers)
        cache[key] = features(params, jnp.asarray(image_io.resize_long_side(images[i], long_side)))
      return cache[key]
    return style_features

  style_features = features_of(styles)

  masks = np.stack([r.mask for r in regions])
  mask_pooling = config.mask_pooling or config.pooling
  inputs["masks"] = octaves.guides_at_layers(
      lambda m, layers: masks_at_layers(masks=m, arch=weights.arch, layers=layers, pooling=mask_pooling),
      jnp.asarray(masks), style_layers)
  if len(regions) > 1 and style_loss.gram_targets:
    # Several regions that mostly do not overlap: each region's Gram matrix from its own pixels (same values).
    # On the device once, like every other input (not re-sent with each evaluation).
    inputs["mask_partition"] = jax.tree.map(jnp.asarray, {name: guidance.guide_partition(np.asarray(m))
                                                          for name, m in inputs["masks"].items()})
  if segmented:
    inputs["style"] = segmentation.style_targets(weights.arch, style_features(0, 1.0), seg.style, style_layers,
                                                 pooling=mask_pooling, normalization=config.gram_normalization)
    inputs["region_weights"] = segmentation.region_means(inputs["masks"])
  else:
    feature_shapes = lambda: jax.eval_shape(lambda img: features(params, img),  # noqa: E731
                                            jax.ShapeDtypeStruct((*shape, 3), jnp.float32))
    inputs["style"], inputs["region_weights"] = style_loss.targets(regions, style_layers, style_sets, style_features,
                                                                   feature_shapes=feature_shapes, seed=config.seed)
    if style_loss.gram_targets and config.gram_normalization == "channels_mass":
      # Whole-image targets are plain Gram matrices, i.e. 'squared_mass' guided ones of a ones guide: rescale.
      inputs["style"] = {name: t / t.shape[-1] for name, t in inputs["style"].items()}
  if config.style_layer_balance == "target" and style_loss.gram_targets:
    inputs["region_weights"] = balance_by_target(inputs["style"], inputs["region_weights"])
  elif config.preserve_colors == "luminance" and style_loss.gram_targets and not segmented:
    colour_targets, _ = gram_targets(regions, style_layers, style_sets, features_of(raw_styles))
    gain = luminance_style_gain(colour_targets=colour_targets, luminance_targets=inputs["style"],
                                region_weights=inputs["region_weights"],
                                layer_weights=plan.layer_weights)
    inputs["region_weights"] = {name: w * gain for name, w in inputs["region_weights"].items()}
  if plan.balance_layer_sets:
    gains = layer_set_gains(
        style_grams=[{name: losses.gram_matrix(style_features(i, 1.0)[name])[0] for name in s}
                     for i, s in enumerate(style_sets)],
        style_sets=style_sets, layer_weights=plan.layer_weights)
    inputs["region_weights"] = apply_layer_set_gains(
        inputs["region_weights"], gains=gains, style_sets=style_sets,
        region_style_weights=[r.style_weights for r in regions])
  sources = TermSources(content=content, net_content=net_content, config=config, hed=hed, guides=guides or {})
  for term in plan.image_terms:
    if term.prepare is not None:
      inputs.update(term.prepare(sources))

  # Computed once here rather than re-laid-out by XLA in every evaluation's backward pass (see nst_jax.models.vgg).
  inputs[vgg.BACKWARD_KERNELS] = jax.jit(vgg.backward_kernels)(params)

  terms_fn = make_loss_terms(model, weights.preprocessing, plan, hed=hed,
                             guided=needs_guidance(regions) or config.gram_normalization != "squared_mass",
                             octave_model=octave_model)
  x0 = initial_image(plan.start_kind, content=net_content, styles=styles, seed=config.seed, shape=shape,
                     regions=regions, noise=plan.start_noise, start_colors=config.start_colors)
  return Problem(terms_fn=terms_fn, inputs=inputs, x0=x0, content=content, plan=plan)
