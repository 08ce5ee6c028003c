"""The images of the objective: the style regions (masks, blends, stroke scales), the style images as the
colour controls prepare them, the start image and the result's colour step."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from nst_jax.errors import NSTError
from nst_jax.io import image_io
from nst_jax.losses import color, guidance, structure
from nst_jax.objective.config import StylizeConfig
from nst_jax.objective.plan import ObjectivePlan


@dataclasses.dataclass(frozen=True)
class Region:
  """One guided style region: image-space mask, weight, blend over the styles and a stroke-scale factor."""

  mask: np.ndarray                    # (H, W) in [0, 1]
  weight: float
  style_weights: tuple[float, ...]    # one per style, summing to 1
  scale: float


def build_regions(plan: ObjectivePlan, shape: tuple[int, int], *, style_masks: Sequence[np.ndarray] | None = None,
                  depth: np.ndarray | None = None) -> list[Region]:
  """Spatial groups (one per style mask, or one blended group) times depth bins (or one bin)."""
  h, w = shape
  config, num_styles, blend = plan.config, plan.num_styles, plan.blend
  if style_masks:
    if len(style_masks) != num_styles:
      raise NSTError(f"`style_masks` has {len(style_masks)} mask(s) for {num_styles} style image(s)")
    groups = [(guidance.resize_mask(m, h, w), tuple(float(j == i) for j in range(num_styles)))
              for i, m in enumerate(style_masks)]
  else:
    groups = [(np.ones((h, w), np.float32), tuple(float(b) for b in blend))]
  if depth is not None:
    depth = guidance.resize_mask(depth, h, w)
    n = config.depth_regions
    bins = list(zip(structure.depth_regions(depth, num_regions=n),
                    structure.depth_region_scales(n, near_scale=config.depth_near_scale,
                                                  far_scale=config.depth_far_scale),
                    structure.depth_region_weights(n)))
  else:
    bins = [(np.ones((h, w), np.float32), 1.0, 1.0)]
  return [Region(mask=np.asarray(g_mask * d_mask, np.float32), weight=float(d_weight), style_weights=sw,
                 scale=float(d_scale))
          for g_mask, sw in groups for d_mask, d_scale, d_weight in bins]


def needs_guidance(regions: Sequence[Region]) -> bool:
  """False for the plain case, one region covering the whole image, whose guided Gram matrices are plain ones."""
  return len(regions) != 1 or not bool(np.all(regions[0].mask == 1.0))


def prepare_styles(styles: Sequence[np.ndarray], *, content: np.ndarray | None,
                   config: StylizeConfig) -> list[np.ndarray]:
  """Colour control (Gatys et al. 2017, sec. 5) applied to the style images before their statistics are taken."""
  if config.preserve_colors == "histogram":
    # Not clipped: clipping would undo the matched statistics, and VGG takes any real-valued input.
    return [color.match_color_histogram(s, content, method=config.color_method) for s in styles]
  if config.preserve_colors == "luminance":
    return [np.asarray(color.match_luminance(s, content), np.float32) for s in styles]
  return list(styles)


def initial_image(init: str, *, content: np.ndarray | None, styles: Sequence[np.ndarray], seed: int,
                  shape: tuple[int, int] | None = None, regions: Sequence[Region] | None = None,
                  style_weights: Sequence[float] | None = None, noise: float = 0.0,
                  start_colors: str = StylizeConfig.start_colors) -> np.ndarray:
  """The starting point: 'colors', the content with the styles' colours (each region's whole colour
  distribution, or with `start_colors='moments'` its colour mean and covariance, moved to its blend of the
  styles', `color.match_style_mixture`; without `regions`, one region with the blend `style_weights`, default
  equal); 'content'; white noise ('noise', and 'colors' or 'content' without a
  content); the first style resized to the output ('style'); or an image file. Any start but white noise is
  blended with a share `noise` of white noise (seeded by `seed`)."""
  h, w = shape if shape is not None else content.shape[:2]
  white = lambda: np.random.default_rng(seed).uniform(0.0, 1.0, size=(h, w, 3)).astype(np.float32)  # noqa: E731
  if init == "noise" or (init in ("content", "colors") and content is None):
    return white()
  if init == "content":
    start = content
  elif init == "colors":
    if regions is None:  # (the masks of `regions` are at the output's size)
      weights = style_weights if style_weights is not None else (1.0 / len(styles),) * len(styles)
      regions = [Region(mask=np.ones((h, w), np.float32), weight=1.0, scale=1.0, style_weights=tuple(weights))]
    # The statistics of a few hundred thousand pixels are those of the whole painting.
    small = [image_io.resize_long_side(s, min(512, max(s.shape[:2]))) for s in styles]
    start = color.match_style_mixture(image_io.resize(content, h, w), small,
                                      region_masks=np.stack([r.mask for r in regions]),
                                      region_style_weights=np.stack([r.style_weights for r in regions]),
                                      method=start_colors)
  elif init == "style":
    start = image_io.resize(styles[0], h, w)
  else:
    start = image_io.resize(image_io.load_image(init, what="--init image"), h, w)
  if noise == 0:
    return np.array(start, np.float32)  # a copy: the caller may own `content`
  return ((1.0 - noise) * start + noise * white()).astype(np.float32)


def as_style_list(styles) -> list[np.ndarray]:
  """`styles` as a list of (H, W, 3) images: one image, or a non-empty sequence of them."""
  if isinstance(styles, np.ndarray) and styles.ndim == 3:
    return [styles]
  styles = list(styles)
  if not styles:
    raise NSTError("at least one style image is needed")
  return styles


def finish_colors(image: np.ndarray, *, content: np.ndarray | None, styles: Sequence[np.ndarray],
                  plan: ObjectivePlan) -> np.ndarray:
  """The result's colour step after the optimisation: luminance-only transfer puts the stylised luminance under
  the content's chroma (`content` at the result's size); `plan.style_colors` gives the result the styles' blended
  chroma statistics."""
  if plan.config.preserve_colors == "luminance" and content is not None:
    return np.asarray(color.combine_luminance(stylized=image, content=content), np.float32)
  if plan.style_colors:
    return color.match_chroma_statistics(image, styles, weights=np.asarray(plan.blend))
  return image
