"""The loss terms by name: what each computes and what it supports (masks, tiling, ...), looked up instead of
branching on names. Style losses (`STYLE_LOSS_TERMS`, chosen by `StylizeConfig.style_loss`) compare the image's
features with the styles'; image terms (`IMAGE_TERMS`) are functions of the whole image and of inputs computed
once, each weighted by the config field `<name>_weight` and on where that weight is positive.

Both engines evaluate image terms on the whole image, so one that supports tiling needs nothing more there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import losses
from nst_jax.errors import NSTError
from nst_jax.losses import matting, structure, temporal
from nst_jax.objective import style_terms


@dataclasses.dataclass(frozen=True)
class StyleLoss:
  """One style loss: its targets (`style_terms.gram_targets` and kin), its value on the image's features, and the
  controls it supports."""

  name: str
  targets: Callable[..., tuple[dict, dict]]
  loss: Callable[..., jax.Array]  # (terms, feats, inputs, layer_weight) -> weighted style loss
  masks: bool                     # regions: --style_masks, --depth (and, for 'whole_image' losses, layer sets)
  tiling: bool                    # the tiled engine computes it
  octaves: bool                   # octave layers (relu2_1@4) of `nst_jax.losses.octaves`
  gram_targets: bool              # targets are Gram matrices: segmentation, target balance, layer-set gains
  free_chroma: bool = False       # leaves the pixels' chroma free: 'auto' style colours apply
  default_layers: tuple[str, ...] | None = None  # replaces the default --style_layers
  whole_image_reason: str = ""    # why it takes no masks, depth or layer sets (when `masks` is False)


@dataclasses.dataclass(frozen=True)
class TermSources:
  """What an image term's inputs are computed from: the content at the output's size (None without one), the
  image the network sees of it (its luminance with luminance-only transfer), the settings, the edge network and
  the caller's per-image guides (arrays at the output's size that no config holds, e.g. a video frame's warped
  predecessors: `TEMPORAL_GUIDES`)."""

  content: np.ndarray | None
  net_content: np.ndarray | None
  config: Any
  hed: Any = None
  guides: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ImageTerm:
  """One loss term of the whole image: `loss(image, inputs, terms)` (unweighted; `terms` is the engine's static
  description) from `prepare(sources)`'s inputs, merged into the problem's inputs once."""

  name: str
  loss: Callable[[jax.Array, Mapping[str, Any], Any], jax.Array]
  prepare: Callable[[TermSources], dict[str, Any]] | None = None
  tiling: bool = True             # the tiled engine supports it
  needs_content: bool = False
  always: bool = False            # present even at weight 0 (total variation)


def _edge_inputs(sources: TermSources) -> dict[str, Any]:
  hed = sources.hed
  params = jax.tree.map(jnp.asarray, hed.params)
  extras = {k: jnp.asarray(v) for k, v in hed.extras.items() if k.startswith("hed/")}
  edges = structure.edge_target(content_rgb01=jnp.asarray(sources.net_content), hed_params=params, hed_extras=extras,
                                preprocessing=hed.preprocessing)
  return {"hed_params": params, "hed_extras": extras, "edges": edges}


# The temporal term's guides: [J, H, W, 3] the results of the frames t - j (j in the clip's temporal frames,
# nearest first) warped into frame t, and [J, H, W] their reliability masks (0 where the frame t - j does not exist).
# J stays the same for every frame after the first, so those frames share one compiled loop.
TEMPORAL_GUIDES = ("temporal_previous", "temporal_masks")


def _temporal_inputs(sources: TermSources) -> dict[str, Any]:
  missing = [name for name in TEMPORAL_GUIDES if name not in sources.guides]
  if missing:
    raise NSTError("StylizeConfig.temporal_weight needs the earlier frames' results warped into this frame (guides "
                   f"{', '.join(missing)}): it applies to the frames of a clip after the first")
  previous, masks = (jnp.asarray(sources.guides[name], jnp.float32) for name in TEMPORAL_GUIDES)
  if previous.ndim != 4 or masks.shape != previous.shape[:3]:
    raise NSTError(f"temporal guides must be [J, H, W, 3] and [J, H, W], got {previous.shape} and {masks.shape}")
  return {"temporal_previous": previous, "temporal_masks": masks}


STYLE_LOSS_TERMS: dict[str, StyleLoss] = {
    "gram": StyleLoss("gram", style_terms.gram_targets, style_terms.gram_loss, masks=True, tiling=True, octaves=True,
                      gram_targets=True),
    "mrf": StyleLoss("mrf", style_terms.mrf_targets, style_terms.mrf_loss, masks=True, tiling=False, octaves=False,
                     gram_targets=False, free_chroma=True, default_layers=("relu3_1", "relu4_1")),  # Li & Wand
    "swd": StyleLoss("swd", style_terms.swd_targets, style_terms.swd_loss, masks=False, tiling=False, octaves=False,
                     gram_targets=False, whole_image_reason="matches one distribution over the whole image"),
}

IMAGE_TERMS: dict[str, ImageTerm] = {
    "tv": ImageTerm("tv", lambda image, inputs, terms: losses.total_variation_loss(image=image), always=True),
    "range": ImageTerm("range", lambda image, inputs, terms: losses.range_penalty(image=image)),
    "laplacian": ImageTerm(
        "laplacian", lambda image, inputs, terms: structure.laplacian_loss(
            image=image, content_laplacians=inputs["laplacian"]),  # the pool sizes that fit the image
        prepare=lambda s: {"laplacian": structure.content_laplacians(jnp.asarray(s.net_content),
                                                                     s.config.laplacian_pool_sizes)},
        tiling=False, needs_content=True),
    # Elementwise and 3x3-box work on the whole image (no VGG), so the tiled engine takes it untiled.
    "matting": ImageTerm(
        "matting", lambda image, inputs, terms: matting.matting_energy(image=image, laplacian=inputs["matting"]),
        prepare=lambda s: {"matting": matting.precompute(s.content, eps=s.config.matting_eps)},  # colour guide
        needs_content=True),
    "edge": ImageTerm(
        "edge", lambda image, inputs, terms: structure.edge_loss(
            image_rgb01=image, target_edges=inputs["edges"], hed_params=inputs["hed_params"],
            hed_extras=inputs["hed_extras"], preprocessing=terms.hed_preprocessing),
        prepare=_edge_inputs, tiling=False, needs_content=True),
    # Ruder et al. 2016: sum over j of the masked mean squared distance to the earlier results (long-term weights).
    "temporal": ImageTerm(
        "temporal", lambda image, inputs, terms: temporal.long_term_temporal_loss(
            image=image, warped_previous=inputs["temporal_previous"], reliability=inputs["temporal_masks"]),
        prepare=_temporal_inputs, tiling=False, needs_content=True),
}
