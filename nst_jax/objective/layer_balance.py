"""How much each layer's loss counts: the content layers' weights, and the style (layer, region) weights'
rescalings that keep the default loss weights meaningful when the targets' magnitudes change (a luminance-only
style, layers balanced by their targets, scale mixing of one painting's deep layers with another's shallow ones).

All are computed once from the targets, outside the jitted step, and multiply the 'content_weights' and
'region_weights' inputs of `nst_jax.objective.terms.LossTerms` and of the tiled loss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

from nst_jax import losses


def content_layer_weights(mean_squares: Mapping[str, jax.Array], *, balance: str) -> dict[str, jax.Array]:
  """{layer: w_l} of the content loss from each target's mean square mean(P_l^2): 1/L each, or with balance
  "target" 1/(L mean(P_l^2)), which makes each layer's term a relative error that does not change when the
  network's activations at that layer are scaled by a constant."""
  count = len(mean_squares)
  if balance == "target":
    return {name: 1.0 / (count * jnp.maximum(jnp.asarray(ms, jnp.float32), 1e-12)) for name, ms in mean_squares.items()}
  return {name: jnp.asarray(1.0 / count, jnp.float32) for name in mean_squares}


def zero_gram_loss(target_gram: jax.Array) -> jax.Array:
  """E_l of an all-zero Gram matrix against `target_gram` ((..., C, C), one per region), ||A||^2 / (4 N^2): the
  style loss a layer starts from when the image has no activation there, a measure of that target's scale."""
  return losses.style_layer_loss(gram=jnp.zeros_like(target_gram), target_gram=target_gram)


def luminance_style_gain(*, colour_targets: Mapping[str, jax.Array], luminance_targets: Mapping[str, jax.Array],
                         region_weights: Mapping[str, jax.Array], layer_weights: Mapping[str, float]) -> float:
  """The factor that gives luminance-only transfer the style loss scale of colour transfer: the weighted style loss
  of an all-zero Gram matrix against the colour style's targets divided by the same against the luminance style's.

  A gray, luminance-matched style has smaller Gram matrices than the colour style's, so at the same weights the
  content term would count for more than in the colour run the weights were chosen on."""
  def weighted(targets: Mapping[str, jax.Array]) -> float:
    return sum(layer_weights[name] * float(jnp.sum(region_weights[name] * zero_gram_loss(t)))
               for name, t in targets.items())
  return weighted(colour_targets) / max(weighted(luminance_targets), 1e-30)


def balance_by_target(targets: Mapping[str, jax.Array], region_weights: Mapping[str, jax.Array]) -> dict:
  """Divides every (layer, region) weight by E_l of an all-zero Gram matrix against that target, ||A||^2 / (4 N^2),
  so that each layer's style loss is a relative error that starts near 1 whatever the layer's activation scale.

  Raw VGG activations shrink by ~100x from relu1_1 to relu5_1, so E_l (fourth power of the activations) spans
  ~6 orders of magnitude and the deep layers (large strokes, Gatys et al. 2016 fig. 4) would barely count."""
  return {name: region_weights[name] / jnp.maximum(zero_gram_loss(grams), 1e-12) for name, grams in targets.items()}


def layer_set_gains(*, style_grams: Sequence[Mapping[str, jax.Array] | None], style_sets: Sequence[Sequence[str]],
                    layer_weights: Mapping[str, float]) -> list[float]:
  """Per style, the factor that gives its layer set the weighted style loss of an all-zero Gram matrix,
  sum over its layers of w_l ||A_l||^2 / (4 N_l^2), of the strongest set (whose factor is 1).

  Scale mixing (Gatys et al. 2017) takes the coarse structure (relu3_1..relu5_1) of one painting and the fine
  texture (relu1_1, relu2_1) of another. With raw VGG activations the deep set's loss is a small fraction of the
  shallow set's, so at the default weights the first painting would not show. `style_grams[i]` holds style i's
  (C, C) Gram matrices of (at least) its set; None for a style that is not used (blend weight 0), whose factor
  is 1."""
  zero = [None if grams is None else sum(layer_weights[name] * float(jnp.sum(zero_gram_loss(grams[name])))
                                         for name in names)
          for grams, names in zip(style_grams, style_sets)]
  strongest = max(z for z in zero if z is not None)
  return [1.0 if z is None else strongest / max(z, 1e-30) for z in zero]


def apply_layer_set_gains(region_weights: Mapping[str, jax.Array], *, gains: Sequence[float],
                          style_sets: Sequence[Sequence[str]],
                          region_style_weights: Sequence[Sequence[float]]) -> dict[str, jax.Array]:
  """Every (layer, region) weight times the blend-weighted mean of the gains of the region's styles that use the
  layer (their blended Gram target is what that weight multiplies); 1 where none does."""
  out = {}
  for name, weights in region_weights.items():
    factors = []
    for blend in region_style_weights:
      parts = [(b, g) for b, g, names in zip(blend, gains, style_sets) if b > 0 and name in names]
      total = sum(b for b, _ in parts)
      factors.append(sum(b * g for b, g in parts) / total if parts else 1.0)
    out[name] = weights * jnp.asarray(factors, jnp.float32)
  return out
