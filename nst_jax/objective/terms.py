"""The weighted loss terms of the whole-image objective, as a hashable function of the image and its inputs.

`LossTerms` holds only what decides the program: the network, the preprocessing, the style layers, which terms are
on and how the style is matched (`registry`). The loss weights (`loss_weights`) and every target are inputs. Two
runs with the same structure therefore build equal `LossTerms`, and every jitted program made from them (the
optimisation loop, the evaluation of the terms; `nst_jax.engines.optimize`) is traced and compiled once per
process and shape, however the weights differ: a study sweeping the style or content weight compiles once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from nst_jax import losses
from nst_jax.losses import octaves
from nst_jax.models import vgg
from nst_jax.models.preprocessing import Preprocessing
from nst_jax.objective.plan import ObjectivePlan
from nst_jax.objective.registry import ImageTerm, StyleLoss
from nst_jax.weights.format import VGGWeights


def loss_weights(plan: ObjectivePlan) -> dict[str, Any]:
  """The jit inputs `LossTerms` reads its weights from: each term's weight ('content', 'style' and every image
  term's, `plan.term_weights`) and Gatys et al.'s w_l per style layer ('layers', `plan.layer_weights`), as float32
  device scalars (sent once, like every other input)."""
  scalar = lambda value: jnp.asarray(value, jnp.float32)  # noqa: E731
  out: dict[str, Any] = {name: scalar(w) for name, w in plan.term_weights.items()}
  out["layers"] = {name: scalar(w) for name, w in plan.layer_weights.items()}
  return out


@dataclasses.dataclass(frozen=True)
class LossTerms:
  """`terms(image, inputs)` -> the weighted loss terms. `inputs` holds 'params', 'loss_weights' (`loss_weights`),
  'content' (layer -> features), 'style' (layer -> the style loss's targets), 'masks' (layer -> (R, h, w)),
  'region_weights' (layer -> (R,)), and the image terms' inputs (`registry.ImageTerm.prepare`); optionally
  `vgg.BACKWARD_KERNELS` (`vgg.backward_kernels(params)`, for cheaper image gradients).

  `guided=False` promises one region whose mask is all ones (`images.needs_guidance`): the Gram matrices are then
  taken of the features directly, which gives the same values without multiplying every feature map by ones."""

  model: vgg.VGG
  preprocessing: Preprocessing
  style_layers: tuple[str, ...]
  content: bool                       # the content term is on (a content image and a positive weight)
  image_terms: tuple[ImageTerm, ...]  # the image terms that are on, in the registry's order
  style_loss: StyleLoss
  guided: bool = True
  gram_normalization: str = "squared_mass"
  hed_preprocessing: Preprocessing | None = None  # the edge loss's HED network's
  # The network of the octave style layers (`nst_jax.losses.octaves`, e.g. relu2_1@4), applied to the image
  # downsampled by each factor; None without such layers.
  octave_model: vgg.VGG | None = None

  def __call__(self, image: jax.Array, inputs: Mapping[str, Any]) -> dict[str, jax.Array]:
    weight = inputs["loss_weights"]
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
    out["style"] = weight["style"] * self.style_loss.loss(self, feats, inputs, weight["layers"])
    for term in self.image_terms:
      out[term.name] = weight[term.name] * term.loss(image, inputs, self)
    return out


def make_loss_terms(model: vgg.VGG, preprocessing: Preprocessing, plan: ObjectivePlan, *,
                    hed: VGGWeights | None = None, guided: bool = True,
                    octave_model: vgg.VGG | None = None) -> LossTerms:
  """The `LossTerms` of `plan` (which terms are on, the style loss, the Gram normalisation) over `model`'s style
  layers (octave layers from `octave_model`); `hed` serves the edge loss. The weights themselves go in the
  inputs: `loss_weights(plan)`."""
  edge_on = any(term.name == "edge" for term in plan.image_terms)
  return LossTerms(model=model, preprocessing=preprocessing, style_layers=plan.style_layers,
                   content=bool(plan.content_layers), image_terms=plan.image_terms, style_loss=plan.style_loss,
                   guided=guided, gram_normalization=plan.config.gram_normalization,
                   hed_preprocessing=hed.preprocessing if hed is not None and edge_on else None,
                   octave_model=octave_model)
