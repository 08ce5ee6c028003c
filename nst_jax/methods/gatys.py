"""Gatys et al. (2016) optimisation-based style transfer with the controls of Gatys et al. (2017).

The image is optimised directly, as RGB in [0, 1]; the weight source's preprocessing is applied inside the loss,
so the same code serves Caffe-style (BGR, 0..255, mean) and torchvision-style (RGB, mean/std) weights. Everything
the loss needs (VGG parameters, content features, style targets, masks, loss weights) is an argument of the jitted
step, never a baked-in constant, so one compilation serves the whole run and every later run in the process with
the same structure (`nst_jax.methods.gatys_terms.LossTerms`).

Style targets are organised in *regions* (Gatys et al. 2017, spatial control): region r has a mask in image
space, a weight, a blend of the style images and a stroke-scale factor. Without masks there is one region
covering the image whose targets are the blended Gram matrices of all styles; `--style_masks` gives one region
per style; a depth map splits every region into depth bins whose style images are resized by a per-bin scale
(larger strokes in front). Masks are carried through the network (3x3 average per conv, 2x2 average per pool) and
every region's Gram matrix is computed from its masked features (guided Gram matrices).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import losses
from nst_jax.errors import NSTError
from nst_jax.highres.memory import check_memory
from nst_jax.io import image_io
from nst_jax.losses import color, guidance, matting, mrf, octaves, segmentation, structure, swd
from nst_jax.methods.gatys_terms import loss_weights, make_loss_terms
from nst_jax.methods.layer_balance import (apply_layer_set_gains, balance_by_target, balances_layer_sets,
                                           content_layer_weights, layer_set_gains, luminance_style_gain)
from nst_jax.methods.optimize import StylizeResult, optimize_image
from nst_jax.methods.stylize_config import (MRF_LAYERS, STYLE_LAYERS, StylizeConfig, blend_weights, check_request,
                                            per_style, start_kind, start_noise, style_layer_sets,
                                            style_layer_weights, uses_style_colors)
from nst_jax.models import vgg
from nst_jax.weights.format import VGGWeights


@dataclasses.dataclass(frozen=True)
class Region:
  """One guided style region: image-space mask, weight, blend over the styles and a stroke-scale factor."""

  mask: np.ndarray                    # (H, W) in [0, 1]
  weight: float
  style_weights: tuple[float, ...]    # one per style, summing to 1
  scale: float


# Normalised parameters by (digest of the parameters' bytes, pooling): computing them costs a few forward passes,
# and the pyramid of `nst_jax.highres` asks for them once per scale. Keyed by content, so equal weights share an
# entry and no entry can be confused with other weights.
_NORMALIZED: dict[tuple[str, str], dict] = {}


def params_digest(params: Mapping) -> str:
  """A digest of every parameter's name, shape, dtype and bytes."""
  digest = hashlib.blake2b(digest_size=16)
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    leaf = np.ascontiguousarray(leaf)
    digest.update(f"{jax.tree_util.keystr(path)}{leaf.shape}{leaf.dtype}".encode())
    digest.update(leaf.tobytes())
  return digest.hexdigest()


def normalized_params(weights: VGGWeights, pooling: str) -> dict:
  """`vgg.normalize_activations` of the weights over a fixed, generated reference set (the demo photo and the two
  generated paintings at 128 px), so that the loss scale does not depend on the images of a run. Remembered for
  the last few weight sets (by content), since it costs a few forward passes."""
  key = (params_digest(weights.params), pooling)
  if key not in _NORMALIZED:
    from nst_jax import demo  # matplotlib's sample photo; imported only when this is asked for
    references = [demo.default_content(), demo.swirl_painting(128), demo.mosaic_painting(128)]
    images = [weights.preprocessing.apply(jnp.asarray(image_io.resize_long_side(x, 128)))[None]
              for x in references]
    if len(_NORMALIZED) >= 4:
      _NORMALIZED.pop(next(iter(_NORMALIZED)))
    _NORMALIZED[key] = vgg.normalize_activations(weights.arch, weights.params, images, pooling=pooling)
  return _NORMALIZED[key]


def build_regions(config: StylizeConfig, shape: tuple[int, int], num_styles: int, *,
                  style_masks: Sequence[np.ndarray] | None = None,
                  depth: np.ndarray | None = None) -> list[Region]:
  """Spatial groups (one per style mask, or one blended group) times depth bins (or one bin)."""
  h, w = shape
  blend = blend_weights(config, num_styles)
  if style_masks:
    if len(style_masks) != num_styles:
      raise NSTError(f"--style_masks has {len(style_masks)} mask(s) for {num_styles} style image(s)")
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


@functools.partial(jax.jit, static_argnums=(0, 1))
def network_features(model: vgg.VGG, preprocessing, params: Mapping, image: jax.Array) -> dict[str, jax.Array]:
  """`model`'s features of one (H, W, 3) image in [0, 1] (compiled once per network, preprocessing and shape)."""
  return model.apply({"params": params}, preprocessing.apply(image)[None])


masks_at_layers = jax.jit(guidance.masks_at_layers, static_argnames=("arch", "layers", "pooling"))


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
  if isinstance(styles, np.ndarray) and styles.ndim == 3:
    return [styles]
  styles = list(styles)
  if not styles:
    raise NSTError("at least one style image is needed")
  return styles


@dataclasses.dataclass
class Problem:
  """Everything one optimisation needs: the loss terms, their jit-argument inputs and the starting image."""

  terms_fn: Callable[[jax.Array, Mapping[str, Any]], dict[str, jax.Array]]
  inputs: dict[str, Any]
  x0: np.ndarray
  content: np.ndarray | None  # resized, in colour (for luminance-only post-processing)


def stylize(*, content: np.ndarray | None, styles: Sequence[np.ndarray] | np.ndarray, weights: VGGWeights,
            config: StylizeConfig, style_masks: Sequence[np.ndarray] | None = None,
            depth: np.ndarray | None = None, hed_weights: VGGWeights | None = None,
            synthesis_shape: tuple[int, int] | None = None,
            on_intermediate: Callable[[int, np.ndarray], None] | None = None,
            progress: bool = True, content_seg: np.ndarray | None = None,
            style_seg: np.ndarray | None = None) -> StylizeResult:
  """Style transfer (or, with `content=None`, texture synthesis) by optimisation.

  `content` and `styles` are (H, W, 3) float images in [0, 1], resized here: the content to `config.size` on its
  long side, each style to `config.size * style_scale` (times a depth bin's scale). Without content the output
  has `synthesis_shape` (default: the first style's aspect ratio at `config.size`). `style_masks` (one (H, W)
  mask per style, any size) and `depth` ((H, W), brighter = nearer) live in content space. `hed_weights` serve
  the edge loss when `weights` lack HED side outputs.
  """
  style_colors = uses_style_colors(config, masked=style_masks is not None or content_seg is not None)
  problem = build_problem(content=content, styles=styles, weights=weights, config=config,
                          style_masks=style_masks, depth=depth, hed_weights=hed_weights,
                          synthesis_shape=synthesis_shape, content_seg=content_seg, style_seg=style_seg)
  result = optimize_image(problem.terms_fn, problem.inputs, problem.x0, config=config,
                          on_intermediate=on_intermediate, progress=progress)
  result.image = finish_colors(result.image, content=problem.content, styles=as_style_list(styles), config=config,
                               style_colors=style_colors)
  return result


def finish_colors(image: np.ndarray, *, content: np.ndarray | None, styles: Sequence[np.ndarray],
                  config: StylizeConfig, style_colors: bool) -> np.ndarray:
  """The result's colour step after the optimisation: luminance-only transfer puts the stylised luminance under
  the content's chroma (`content` at the result's size); `style_colors` (`uses_style_colors`) gives the result the
  styles' blended chroma statistics."""
  if config.preserve_colors == "luminance" and content is not None:
    return np.asarray(color.combine_luminance(stylized=image, content=content), np.float32)
  if style_colors:
    return color.match_chroma_statistics(image, styles, weights=blend_weights(config, len(styles)))
  return image


def build_problem(*, content: np.ndarray | None, styles: Sequence[np.ndarray] | np.ndarray, weights: VGGWeights,
                  config: StylizeConfig, style_masks: Sequence[np.ndarray] | None = None,
                  depth: np.ndarray | None = None, hed_weights: VGGWeights | None = None,
                  synthesis_shape: tuple[int, int] | None = None, content_seg: np.ndarray | None = None,
                  style_seg: np.ndarray | None = None) -> Problem:
  """Validates the request, resizes the images and computes every target; see `stylize` for the arguments.

  `content_seg` and `style_seg` (both or neither, any size) are Luan et al.'s colour-coded segmentation maps of the
  content and of the single style image: each matched colour is a region whose target is the guided Gram matrix
  of the style image's pixels of that colour (`nst_jax.losses.segmentation`), weighted by the region's content-mask
  mean.
  """
  styles = as_style_list(styles)
  has_content = content is not None
  check_request(config, weights.arch, num_styles=len(styles), has_content=has_content)
  segmented = content_seg is not None or style_seg is not None
  if segmented and (len(styles) != 1 or style_masks or depth is not None or config.style_loss != "gram"
                    or not has_content):
    raise NSTError("segmentation maps (--content_seg/--style_seg) take a content image, one style image and the "
                   "gram style loss, without --style_masks or --depth")
  if config.style_loss == "swd" and (style_masks or depth is not None or config.style_layer_sets):
    raise NSTError("--style_loss swd matches one distribution over the whole image: it does not take "
                   "--style_masks, --depth or --style_layer_sets")
  use_content = has_content and config.content_weight > 0
  style_sets = style_layer_sets(config, len(styles))
  if config.style_loss == "mrf" and config.style_layers == STYLE_LAYERS and not config.style_layer_sets:
    style_sets = [MRF_LAYERS] * len(styles)
  style_layers = tuple(dict.fromkeys(name for s in style_sets for name in s))
  octave_layers = octaves.octave_layers(style_layers)
  if octave_layers and (segmented or config.style_loss != "gram"):
    raise NSTError(f"octave style layers ({octave_layers[0]}) take the gram style loss, without segmentation maps")
  # The network's layers on the image itself, and those the octave layers take from downsampled copies.
  all_layers = tuple(dict.fromkeys((config.content_layers if use_content else ()) + octaves.at_factor(style_layers, 1)))
  octave_bases = tuple(dict.fromkeys(octaves.split(n)[0] for n in octave_layers))
  all_layers = all_layers or octave_bases  # texture synthesis from octave layers alone
  network_layers = all_layers + octave_bases
  shape = (image_io.long_side_shape(content.shape, config.size) if has_content
           else synthesis_shape or image_io.long_side_shape(styles[0].shape, config.size))
  check_memory(shape, weights.arch, network_layers)
  hed = None
  if config.edge_weight > 0:
    hed = hed_weights if hed_weights is not None else weights
    structure.require_hed(hed)

  if has_content:
    content = image_io.resize(content, *shape)
  raw_styles, styles = styles, prepare_styles(styles, content=content, config=config)
  net_content = color.luminance_image(content) if config.preserve_colors == "luminance" else content
  scales = per_style(config.style_scale, len(styles), "--style_scale")
  if segmented:
    style_shape = image_io.long_side_shape(styles[0].shape, max(16, round(config.size * scales[0])))
    seg = segmentation.match(content_seg, style_seg, content_shape=shape, style_shape=style_shape)
    regions = [Region(mask=m, weight=1.0, style_weights=(1.0,), scale=1.0) for m in seg.content]
  else:
    regions = build_regions(config, shape, len(styles), style_masks=style_masks, depth=depth)

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
  inputs: dict[str, Any] = {"params": params, "loss_weights": loss_weights(config, style_layers=style_layers)}
  if use_content:
    content_feats = network_features(model, weights.preprocessing, params, jnp.asarray(net_content))
    inputs["content"] = {name: content_feats[name] for name in config.content_layers}
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
  if len(regions) > 1 and config.style_loss == "gram":
    # Several regions that mostly do not overlap: each region's Gram matrix from its own pixels (same values).
    # On the device once, like every other input (not re-sent with each evaluation).
    inputs["mask_partition"] = jax.tree.map(jnp.asarray, {name: guidance.guide_partition(np.asarray(m))
                                                          for name, m in inputs["masks"].items()})
  if segmented:
    inputs["style"] = segmentation.style_targets(weights.arch, style_features(0, 1.0), seg.style, style_layers,
                                                 pooling=mask_pooling, normalization=config.gram_normalization)
    inputs["region_weights"] = segmentation.region_means(inputs["masks"])
  elif config.style_loss == "swd":
    (region,) = regions
    positions = jax.eval_shape(lambda img: features(params, img), jax.ShapeDtypeStruct((*shape, 3), jnp.float32))
    inputs["style"] = {
        name: swd.style_target([style_features(i, region.scale)[name] for i in range(len(styles))],
                               positions=positions[name].shape[1] * positions[name].shape[2], blend=region.style_weights,
                               seed=config.seed + k)
        for k, name in enumerate(style_layers)}
    inputs["region_weights"] = {name: jnp.ones((1,), jnp.float32) for name in style_layers}
  else:
    region_inputs = _region_banks if config.style_loss == "mrf" else _region_targets
    inputs["style"], inputs["region_weights"] = region_inputs(regions, style_layers, style_sets, style_features)
    if config.style_loss == "gram" and config.gram_normalization == "channels_mass":
      # Whole-image targets are plain Gram matrices, i.e. 'squared_mass' guided ones of a ones guide: rescale.
      inputs["style"] = {name: t / t.shape[-1] for name, t in inputs["style"].items()}
  if config.style_layer_balance == "target" and config.style_loss == "gram":
    inputs["region_weights"] = balance_by_target(inputs["style"], inputs["region_weights"])
  elif config.preserve_colors == "luminance" and config.style_loss == "gram" and not segmented:
    colour_targets, _ = _region_targets(regions, style_layers, style_sets, features_of(raw_styles))
    gain = luminance_style_gain(colour_targets=colour_targets, luminance_targets=inputs["style"],
                                region_weights=inputs["region_weights"],
                                layer_weights=style_layer_weights(config, style_layers))
    inputs["region_weights"] = {name: w * gain for name, w in inputs["region_weights"].items()}
  if balances_layer_sets(config, len(styles)):
    gains = layer_set_gains(
        style_grams=[{name: losses.gram_matrix(style_features(i, 1.0)[name])[0] for name in s}
                     for i, s in enumerate(style_sets)],
        style_sets=style_sets, layer_weights=style_layer_weights(config, style_layers))
    inputs["region_weights"] = apply_layer_set_gains(
        inputs["region_weights"], gains=gains, style_sets=style_sets,
        region_style_weights=[r.style_weights for r in regions])
  if config.matting_weight > 0:
    inputs["matting"] = matting.precompute(content, eps=config.matting_eps)  # the colour content is the guide
  if config.laplacian_weight > 0:
    inputs["laplacian"] = structure.content_laplacians(jnp.asarray(net_content), config.laplacian_pool_sizes)
  if config.edge_weight > 0:
    inputs["hed_params"] = jax.tree.map(jnp.asarray, hed.params)
    inputs["hed_extras"] = {k: jnp.asarray(v) for k, v in hed.extras.items() if k.startswith("hed/")}
    inputs["edges"] = structure.edge_target(content_rgb01=jnp.asarray(net_content), hed_params=inputs["hed_params"],
                                            hed_extras=inputs["hed_extras"], preprocessing=hed.preprocessing)

  # Computed once here rather than re-laid-out by XLA in every evaluation's backward pass (see nst_jax.models.vgg).
  inputs[vgg.BACKWARD_KERNELS] = jax.jit(vgg.backward_kernels)(params)

  terms_fn = make_loss_terms(model, weights.preprocessing, config, style_layers=style_layers,
                             has_content=has_content, hed=hed,
                             guided=needs_guidance(regions) or config.gram_normalization != "squared_mass",
                             octave_model=octave_model)
  x0 = initial_image(start_kind(config), content=net_content, styles=styles, seed=config.seed, shape=shape,
                     regions=regions, noise=start_noise(config), start_colors=config.start_colors)
  return Problem(terms_fn=terms_fn, inputs=inputs, x0=x0, content=content)


def _region_banks(regions: Sequence[Region], style_layers: Sequence[str], style_sets: Sequence[Sequence[str]],
                  style_features) -> tuple[dict, dict]:
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


def _region_targets(regions: Sequence[Region], style_layers: Sequence[str],
                    style_sets: Sequence[Sequence[str]], style_features) -> tuple[dict, dict]:
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
