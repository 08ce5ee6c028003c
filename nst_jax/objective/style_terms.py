"""The style losses of the whole-image objective: each one's targets (built once from the style images' features)
and its value on the image's features. `registry.STYLE_LOSS_TERMS` names them; `terms.LossTerms` calls them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from nst_jax import losses
from nst_jax.losses import guidance, mrf, swd

# style_features(i, factor): the features of style i at its scale times `factor`.
StyleFeatures = Callable[[int, float], dict[str, jax.Array]]


def gram_targets(regions: Sequence, style_layers: Sequence[str], style_sets: Sequence[Sequence[str]],
                 style_features: StyleFeatures, **_: Any) -> tuple[dict, dict]:
  """Per layer: (R, C, C) blended Gram targets and (R,) region weights. A region whose styles all skip a layer
  (scale mixing) gets weight 0 there."""
  targets, weights = {}, {}
  for name in style_layers:
    grams, region_weights = [], []
    for region in regions:
      parts = [(sw, losses.gram_matrix(style_features(i, region.scale)[name])[0])
               for i, sw in enumerate(region.style_weights) if sw > 0 and name in style_sets[i]]
      total = sum(sw for sw, _ in parts)
      grams.append(sum(sw * g for sw, g in parts) / total if parts else None)
      region_weights.append(region.weight if parts else 0.0)
    like = next(g for g in grams if g is not None)  # some region uses every layer in style_layers
    targets[name] = jnp.stack([g if g is not None else jnp.zeros_like(like) for g in grams])
    weights[name] = jnp.asarray(region_weights, jnp.float32)
  return targets, weights


def mrf_targets(regions: Sequence, style_layers: Sequence[str], style_sets: Sequence[Sequence[str]],
                style_features: StyleFeatures, **_: Any) -> tuple[dict, dict]:
  """Per layer, one MRF patch bank per region (the pooled patches of the region's styles at the region's scale;
  blend weights do not apply, the nearest-neighbour search picks from all) and the region weights as floats."""
  banks, weights = {}, {}
  for name in style_layers:
    banks[name], weights[name] = [], []
    for region in regions:
      parts = [mrf.style_patch_bank(style_features(i, region.scale)[name])
               for i, sw in enumerate(region.style_weights) if sw > 0 and name in style_sets[i]]
      banks[name].append({key: jnp.concatenate([part[key] for part in parts]) for key in parts[0]}
                         if parts else None)
      weights[name].append(region.weight if parts else 0.0)
    # A region that skips this layer (scale mixing) keeps its place with a one-patch dummy bank and weight 0.
    like = next(bank for bank in banks[name] if bank is not None)
    banks[name] = [bank if bank is not None else jax.tree.map(lambda a: jnp.zeros_like(a[:1]), like)
                   for bank in banks[name]]
  return banks, weights


def swd_targets(regions: Sequence, style_layers: Sequence[str], style_sets: Sequence[Sequence[str]],
                style_features: StyleFeatures, *, feature_shapes: Callable[[], Mapping[str, Any]],
                seed: int) -> tuple[dict, dict]:
  """Per layer, the sorted projections of the blended styles' features (`swd.style_target`) for an image whose
  features have `feature_shapes()`; one region, weight 1."""
  (region,) = regions
  positions = feature_shapes()
  targets = {
      name: swd.style_target([style_features(i, region.scale)[name] for i in range(len(region.style_weights))],
                             positions=positions[name].shape[1] * positions[name].shape[2],
                             blend=region.style_weights, seed=seed + k)
      for k, name in enumerate(style_layers)}
  return targets, {name: jnp.ones((1,), jnp.float32) for name in style_layers}


def gram_loss(terms, feats: Mapping[str, jax.Array], inputs: Mapping[str, Any],
              layer_weight: Mapping[str, jax.Array]) -> jax.Array:
  """The (guided) Gram style loss of `terms.style_layers`, region by region."""
  if not terms.guided:
    return sum(
        layer_weight[name] * jnp.sum(inputs["region_weights"][name] * losses.style_layer_loss(
            gram=losses.gram_matrix(feats[name]), target_gram=inputs["style"][name]))
        for name in terms.style_layers)
  # Region weights differ per layer (scale mixing), so the guided loss is summed layer by layer.
  return sum(
      guidance.guided_style_loss(features={name: feats[name]}, target_grams={name: inputs["style"][name]},
                                 masks={name: inputs["masks"][name]},
                                 region_weights=inputs["region_weights"][name],
                                 layer_weights={name: layer_weight[name]},
                                 normalization=terms.gram_normalization,
                                 partitions=({name: inputs["mask_partition"][name]}
                                             if "mask_partition" in inputs else None))
      for name in terms.style_layers)


def mrf_loss(terms, feats: Mapping[str, jax.Array], inputs: Mapping[str, Any],
             layer_weight: Mapping[str, jax.Array]) -> jax.Array:
  """Each region matches patches only against its own styles' patches, weighted by its mask (patch centres)."""
  return sum(
      layer_weight[name] * sum(
          weight * mrf.mrf_loss(features=feats[name], bank=bank, patch_weights=mrf.patch_centre_weights(
              inputs["masks"][name][r], bank["patches"].shape[1]))
          for r, (bank, weight) in enumerate(zip(inputs["style"][name], inputs["region_weights"][name])))
      for name in terms.style_layers)


def swd_loss(terms, feats: Mapping[str, jax.Array], inputs: Mapping[str, Any],
             layer_weight: Mapping[str, jax.Array]) -> jax.Array:
  """The sliced Wasserstein distance of every style layer's features to its target."""
  return swd.swd_style_loss(features=feats, targets=inputs["style"], layer_weights=layer_weight)
