"""The weighted loss terms of Gatys-style transfer, as a hashable function of the image and its inputs.

`LossTerms` holds only what decides the program: the network, the preprocessing, the style layers, which terms are
on and how the style is matched. The loss weights (`loss_weights`) and every target are inputs. Two runs with the
same structure therefore build equal `LossTerms`, and every jitted program made from them (the optimisation loop,
the evaluation of the terms; `nst_jax.methods.optimize`) is traced and compiled once per process and shape, however
the weights differ: a study sweeping the style or content weight compiles once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from nst_jax import losses
from nst_jax.losses import guidance, matting, mrf, octaves, structure, swd
from nst_jax.methods.stylize_config import StylizeConfig, style_layer_weights
from nst_jax.models import vgg
from nst_jax.models.preprocessing import Preprocessing
from nst_jax.weights.format import VGGWeights

# Terms that exist only when their weight is positive; 'style' and 'tv' always exist, 'content' with a content.
OPTIONAL_TERMS = ("range", "laplacian", "matting", "edge")


def loss_weights(config: StylizeConfig, *, style_layers: Sequence[str]) -> dict[str, Any]:
  """The jit inputs `LossTerms` reads its weights from: each term's weight ('content', 'style', 'tv' and the
  OPTIONAL_TERMS, from `config.<term>_weight`) and Gatys et al.'s w_l per style layer ('layers',
  `style_layer_weights`), as float32 device scalars (sent once, like every other input)."""
  scalar = lambda value: jnp.asarray(value, jnp.float32)  # noqa: E731
  out: dict[str, Any] = {name: scalar(getattr(config, f"{name}_weight"))
                         for name in ("content", "style", "tv") + OPTIONAL_TERMS}
  out["layers"] = {name: scalar(w) for name, w in style_layer_weights(config, style_layers).items()}
  return out


@dataclasses.dataclass(frozen=True)
class LossTerms:
  """`terms(image, inputs)` -> the weighted loss terms. `inputs` holds 'params', 'loss_weights' (`loss_weights`),
  'content' (layer -> features), 'style' (layer -> (R, C, C) targets or MRF patch banks), 'masks' (layer ->
  (R, h, w)), 'region_weights' (layer -> (R,)), and the structure targets when those losses are on; optionally
  `vgg.BACKWARD_KERNELS` (`vgg.backward_kernels(params)`, for cheaper image gradients).

  `guided=False` promises one region whose mask is all ones (`gatys.needs_guidance`): the Gram matrices are then
  taken of the features directly, which gives the same values without multiplying every feature map by ones."""

  model: vgg.VGG
  preprocessing: Preprocessing
  style_layers: tuple[str, ...]
  content: bool                       # the content term is on (a content image and a positive weight)
  optional: frozenset[str]            # the OPTIONAL_TERMS that are on
  style_loss: str = "gram"
  guided: bool = True
  gram_normalization: str = "squared_mass"
  hed_preprocessing: Preprocessing | None = None  # the edge loss's HED network's
  # The network of the octave style layers (`nst_jax.losses.octaves`, e.g. relu2_1@4), applied to the image
  # downsampled by each factor; None without such layers.
  octave_model: vgg.VGG | None = None

  def __call__(self, image: jax.Array, inputs: Mapping[str, Any]) -> dict[str, jax.Array]:
    weight = inputs["loss_weights"]
    layer_weight = weight["layers"]
    variables = {"params": inputs["params"]}
    if vgg.BACKWARD_KERNELS in inputs:
      variables[vgg.BACKWARD_KERNELS] = inputs[vgg.BACKWARD_KERNELS]
    feats = dict(self.model.apply(variables, self.preprocessing.apply(image)[None]))
    if self.octave_model is not None:
      net = lambda img, layers: self.octave_model.apply(variables, self.preprocessing.apply(img)[None])  # noqa: E731
      feats.update(octaves.features(net, image, octaves.octave_layers(self.style_layers)))
    out = {}
    if self.content:
      out["content"] = weight["content"] * losses.content_loss(features=feats, targets=inputs["content"],
                                                               layer_weights=inputs["content_weights"])
    out["style"] = weight["style"] * self._style(feats, inputs, layer_weight)
    out["tv"] = weight["tv"] * losses.total_variation_loss(image=image)
    if "range" in self.optional:
      out["range"] = weight["range"] * losses.range_penalty(image=image)
    if "laplacian" in self.optional:
      out["laplacian"] = weight["laplacian"] * structure.laplacian_loss(
          image=image, content_laplacians=inputs["laplacian"])  # the pool sizes that fit the image
    if "matting" in self.optional:
      out["matting"] = weight["matting"] * matting.matting_energy(image=image, laplacian=inputs["matting"])
    if "edge" in self.optional:
      out["edge"] = weight["edge"] * structure.edge_loss(
          image_rgb01=image, target_edges=inputs["edges"], hed_params=inputs["hed_params"],
          hed_extras=inputs["hed_extras"], preprocessing=self.hed_preprocessing)
    return out

  def _style(self, feats: Mapping[str, jax.Array], inputs: Mapping[str, Any],
             layer_weight: Mapping[str, jax.Array]) -> jax.Array:
    if self.style_loss == "mrf":
      # Each region matches patches only against its own styles' patches, weighted by its mask (patch centres).
      return sum(
          layer_weight[name] * sum(
              weight * mrf.mrf_loss(features=feats[name], bank=bank, patch_weights=mrf.patch_centre_weights(
                  inputs["masks"][name][r], bank["patches"].shape[1]))
              for r, (bank, weight) in enumerate(zip(inputs["style"][name], inputs["region_weights"][name])))
          for name in self.style_layers)
    if self.style_loss == "swd":
      return swd.swd_style_loss(features=feats, targets=inputs["style"], layer_weights=layer_weight)
    if not self.guided:
      return sum(
          layer_weight[name] * jnp.sum(inputs["region_weights"][name] * losses.style_layer_loss(
              gram=losses.gram_matrix(feats[name]), target_gram=inputs["style"][name]))
          for name in self.style_layers)
    # Region weights differ per layer (scale mixing), so the guided loss is summed layer by layer.
    return sum(
        guidance.guided_style_loss(features={name: feats[name]}, target_grams={name: inputs["style"][name]},
                                   masks={name: inputs["masks"][name]},
                                   region_weights=inputs["region_weights"][name],
                                   layer_weights={name: layer_weight[name]},
                                   normalization=self.gram_normalization,
                                   partitions=({name: inputs["mask_partition"][name]}
                                               if "mask_partition" in inputs else None))
        for name in self.style_layers)


def make_loss_terms(model: vgg.VGG, preprocessing: Preprocessing, config: StylizeConfig, *,
                    style_layers: Sequence[str], has_content: bool, hed: VGGWeights | None = None,
                    guided: bool = True, octave_model: vgg.VGG | None = None) -> LossTerms:
  """The `LossTerms` of `config` (which terms are on, the style loss, the Gram normalisation) over `model`'s
  `style_layers` (octave layers from `octave_model`); `hed` serves the edge loss. The weights themselves go in
  the inputs: `loss_weights(config)`."""
  return LossTerms(model=model, preprocessing=preprocessing, style_layers=tuple(style_layers),
                   content=has_content and config.content_weight > 0,
                   optional=frozenset(name for name in OPTIONAL_TERMS if getattr(config, f"{name}_weight") > 0),
                   style_loss=config.style_loss, guided=guided, gram_normalization=config.gram_normalization,
                   hed_preprocessing=hed.preprocessing if hed is not None and config.edge_weight > 0 else None,
                   octave_model=octave_model)
