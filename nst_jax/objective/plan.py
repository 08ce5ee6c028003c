"""The objective of one run resolved once from its `StylizeConfig`: layers and their weights, per-style values,
blend weights, which terms are on and with what weight, the start image and the colour steps. The whole-image
and tiled engines build their losses from an `ObjectivePlan` and derive nothing from the config themselves."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from nst_jax.errors import NSTError
from nst_jax.losses import octaves
from nst_jax.objective import config as settings
from nst_jax.objective.config import STYLE_LAYERS, StylizeConfig
from nst_jax.objective.registry import IMAGE_TERMS, STYLE_LOSS_TERMS, ImageTerm, StyleLoss


@dataclasses.dataclass(frozen=True)
class ObjectivePlan:
  """What the engines need of a config, derived once (`resolve_plan`); `config` keeps the plain settings
  (pooling, colour controls, balances) that the engines read as they are."""

  config: StylizeConfig
  arch: str
  num_styles: int
  has_content: bool
  style_loss: StyleLoss
  blend: tuple[float, ...]                    # the styles' blend weights, summing to 1
  style_scales: tuple[float, ...]             # per style
  style_sets: tuple[tuple[str, ...], ...]     # per style, the layers it is matched at
  style_layers: tuple[str, ...]               # every style layer in use, in order
  content_layers: tuple[str, ...]             # empty: no content term
  layer_weights: Mapping[str, float]          # Gatys et al.'s w_l over `style_layers`
  term_weights: Mapping[str, float]           # 'content', 'style' and every image term's weight
  image_terms: tuple[ImageTerm, ...]          # the image terms that are on
  start_kind: str                             # `initial_image`'s kind
  start_noise: float
  style_colors: bool                          # the result takes the styles' chroma statistics
  balance_layer_sets: bool                    # scale mixing gets `layer_balance.layer_set_gains`

  @property
  def octave_layers(self) -> tuple[str, ...]:
    """The octave layers (`relu2_1@4`) among the style layers (`nst_jax.losses.octaves`)."""
    return tuple(octaves.octave_layers(self.style_layers))

  def at_size(self, size: int) -> ObjectivePlan:
    """The same objective for an output of long side `size` (a scale of the high-resolution pyramid)."""
    return dataclasses.replace(self, config=dataclasses.replace(self.config, size=size))


def resolve_plan(config: StylizeConfig, *, arch: str, num_styles: int = 1, has_content: bool = True,
                 style_masks: bool = False, depth: bool = False, segmented: bool = False,
                 image_terms: Mapping[str, ImageTerm] = IMAGE_TERMS) -> ObjectivePlan:
  """Checks the request and derives its plan: the one place where a config's values are derived.

  Args:
    config: the run's settings.
    arch: the network's architecture, whose layer names the config's must be.
    num_styles, has_content: how many style images there are and whether there is a content image.
    style_masks, depth, segmented: whether those guides are given.
    image_terms: the registry of image terms to consult (default `IMAGE_TERMS`); a term is on where the config's
      `<name>_weight` is positive (and, if it needs one, there is a content image).

  Returns:
    The `ObjectivePlan`.

  Raises:
    NSTError: naming the config field, for what `config.check_request` refuses and the combinations the chosen
      losses do not support.
  """
  settings.check_request(config, arch, num_styles=num_styles, has_content=has_content)
  style_loss = STYLE_LOSS_TERMS[config.style_loss]
  if segmented and (num_styles != 1 or style_masks or depth or not style_loss.gram_targets or not has_content):
    raise NSTError("segmentation maps (`content_seg`/`style_seg`) take a content image, one style image and the "
                   "gram style loss, without `style_masks` or `depth`")
  if not style_loss.masks and (style_masks or depth or config.style_layer_sets):
    raise NSTError(f"StylizeConfig.style_loss {style_loss.name} {style_loss.whole_image_reason}: it does not take "
                   "`style_masks`, `depth` or StylizeConfig.style_layer_sets")
  style_sets = settings.style_layer_sets(config, num_styles)
  if style_loss.default_layers and config.style_layers == STYLE_LAYERS and not config.style_layer_sets:
    style_sets = [style_loss.default_layers] * num_styles
  style_layers = tuple(dict.fromkeys(name for s in style_sets for name in s))
  octave_layers = octaves.octave_layers(style_layers)
  if octave_layers and (segmented or not style_loss.octaves):
    raise NSTError(f"octave style layers ({octave_layers[0]}) take the gram style loss, without segmentation maps")
  weights = {"content": config.content_weight, "style": config.style_weight}
  weights.update({name: float(getattr(config, f"{name}_weight", 0.0)) for name in image_terms})
  on = tuple(term for name, term in image_terms.items()
             if term.always or (weights[name] > 0 and (has_content or not term.needs_content)))
  return ObjectivePlan(
      config=config, arch=arch, num_styles=num_styles, has_content=has_content, style_loss=style_loss,
      blend=tuple(float(b) for b in settings.blend_weights(config, num_styles)),
      style_scales=tuple(settings.per_style(config.style_scale, num_styles, "StylizeConfig.style_scale")),
      style_sets=tuple(tuple(s) for s in style_sets), style_layers=style_layers,
      content_layers=tuple(config.content_layers) if has_content and config.content_weight > 0 else (),
      layer_weights=settings.style_layer_weights(config, style_layers), term_weights=weights, image_terms=on,
      start_kind=settings.start_kind(config), start_noise=settings.start_noise(config),
      style_colors=settings.uses_style_colors(config, masked=style_masks or segmented),
      balance_layer_sets=(bool(config.style_layer_sets) and num_styles > 1 and style_loss.gram_targets
                          and config.style_layer_balance == "none"))
