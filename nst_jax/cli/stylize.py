"""`python -m nst_jax stylize` and `synthesize`: Gatys et al. by optimisation.

  python -m nst_jax stylize --content A.jpg --style B.jpg --output C.png [--size 512 --iterations 500 ...]
  python -m nst_jax stylize --content A.jpg --style B.jpg,C.jpg --style_blend 0.7,0.3 --preserve_colors luminance
  python -m nst_jax synthesize --style B.jpg[,C.jpg] --size 256 --output texture.png

With the controls of Gatys et al. (2017) and, for large images, the tiled coarse-to-fine engine of
`nst_jax.highres`. Without --content/--style, `stylize` runs on the built-in demo pair (matplotlib's Grace Hopper
photo and a generated swirl painting).
"""

from __future__ import annotations

import pathlib
import time

from absl import flags

from nst_jax import optim
from nst_jax.cli import field_flags, optimization_flags, shared_flags, validation
from nst_jax.cli.command import Command, Sections
from nst_jax.engines.optimize import NonFiniteLossError
from nst_jax.errors import NSTError
from nst_jax.highres import distributed, highres_config, memory
from nst_jax.io import image_io
from nst_jax.losses import color, octaves, structure
from nst_jax.methods import gatys
from nst_jax.models import vgg
from nst_jax.objective.config import STYLE_LAYER_BALANCES, STYLE_LOSSES, StylizeConfig, check_request, per_style
from nst_jax.objective.plan import resolve_plan
from nst_jax.weights.store import resolve_weights

# Flags that send a run through the high-resolution engine when given.
HIGHRES_FLAGS = optimization_flags.TILE_FLAGS + ("start_size", "scale_step", "scale_iterations", "checkpoint_dir",
                                                 "checkpoint_every", "coordinator_address")
# Flags about the content image, which synthesize does not define.
CONTENT_ONLY_FLAGS = ("content_weight", "content_layers", "preserve_colors", "color_method", "laplacian_weight",
                      "edge_weight", "hed_weights", "depth", "depth_regions")
# Flags that name files the command reads (never overwritten by --output).
INPUT_FLAGS = ("content", "style", "style_masks", "depth", "init", "weights", "hed_weights", "checkpoint_dir")


def define_flags(fv: flags.FlagValues, *, synthesis: bool = False) -> Sections:
  """Defines the command's flags on `fv` (`synthesis`: without the content flags); returns the help sections."""
  defaults = StylizeConfig(init="noise" if synthesis else "colors")
  images = shared_flags.define_images(
      fv, content=None if synthesis else "Content image (default: matplotlib's grace_hopper.jpg).",
      style="Style image(s), comma-separated (default: a generated swirl painting).", output="stylized.png",
      size=defaults.size, size_help="Long side of the output in pixels.")
  optimisation = optimization_flags.define_optimizer(
      fv, iterations=defaults.iterations, iterations_help="Optimizer steps.", optimizer=defaults.optimizer,
      log_every=defaults.log_every, stall_rtol=defaults.stall_rtol, seed=defaults.seed)
  flags.DEFINE_enum("lr_schedule", defaults.lr_schedule, list(optim.SCHEDULES), "Learning-rate schedule.",
                    flag_values=fv)
  flags.DEFINE_bool("normalize_gradients", False, "Divide gradients by their mean magnitude (first-order only).",
                    flag_values=fv)
  flags.DEFINE_integer("save_every", 0, "Write an intermediate image every N iterations (0: never).", flag_values=fv)
  optimisation[1].extend(["lr_schedule", "normalize_gradients", "save_every"])
  losses = optimization_flags.define_loss(
      fv, defaults=defaults, init_help="Initial image: colors (the content in the styles' colour mean and "
      "covariance; the content itself with --preserve_colors), content, noise, style, or an image path.")
  flags.DEFINE_float("init_noise", defaults.init_noise, "Share of white noise blended into the start (not 'noise'): "
                     "lets flat areas (sky, walls) take the style's texture (default 0.2; 0.3 with "
                     "--preserve_colors).", flag_values=fv)
  flags.DEFINE_enum("start_colors", defaults.start_colors, list(color.START_COLOR_METHODS), "How --init colors "
                    "recolours the content: moments (colour mean and covariance) or distribution (the painting's "
                    "whole palette, e.g. a blue sky takes one of its colours instead of a blend).", flag_values=fv)
  flags.DEFINE_string("style_layer_sets", "", "Per-style layers separated by ';' (scale mixing: e.g. "
                      "'structure;fine' takes coarse structure from the first style, fine texture from the second; "
                      "each set is weighted to the strongest set's loss scale, so the deep layers count).",
                      flag_values=fv)
  flags.DEFINE_string("style_layer_weights", "", "Relative style-layer weights w_l, e.g. relu4_1=10,relu5_1=100 "
                      "(unnamed layers 1; normalised to sum 1).", flag_values=fv)
  flags.DEFINE_enum("style_layer_balance", defaults.style_layer_balance, list(STYLE_LAYER_BALANCES),
                    "target: divide each style layer's loss by its value for an all-zero Gram matrix, so every layer "
                    "counts (stroke-size presets, scale mixing, --depth); raise --style_weight (~100).",
                    flag_values=fv)
  flags.DEFINE_enum("style_loss", defaults.style_loss, list(STYLE_LOSSES), "Gram matrices (Gatys), MRF patches "
                    "(Li & Wand 2016) or sliced Wasserstein feature distributions (Heitz et al. 2021; no masks).",
                    flag_values=fv)
  flags.DEFINE_bool("normalize_network", defaults.normalize_network, "Rescale every VGG filter to mean activation 1 "
                    "(Gatys et al.) so deep style layers count; the loss scale changes: raise --style_weight (1e4+).",
                    flag_values=fv)
  losses[1].extend(["init_noise", "start_colors", "style_layer_sets", "style_layer_weights", "style_layer_balance",
                    "style_loss", "normalize_network"])
  flags.DEFINE_list("style_blend", [], "Blend weights of the style images (normalised).", flag_values=fv)
  flags.DEFINE_list("style_scale", ["1"], "Style image size relative to --size, one value or one per style.",
                    flag_values=fv)
  flags.DEFINE_list("style_masks", [], "One mask per style in content space (white = that style).", flag_values=fv)
  flags.DEFINE_enum("preserve_colors", defaults.preserve_colors, list(color.COLOR_MODES), "Keep the content's "
                    "colours: luminance-only transfer (YIQ) or style colour histogram matching.", flag_values=fv)
  flags.DEFINE_enum("color_method", defaults.color_method, ["cholesky", "eigen"], "Histogram matching variant.",
                    flag_values=fv)
  flags.DEFINE_enum("style_colors", defaults.style_colors, list(color.STYLE_COLOR_MODES), "Give the result the "
                    "styles' chroma statistics, luma kept (auto: with --style_loss mrf, whose patches leave colour "
                    "free; a gray style then gives a gray result).", flag_values=fv)
  flags.DEFINE_float("laplacian_weight", 0.0, "Laplacian structure loss weight (Li et al. 2017).", flag_values=fv)
  flags.DEFINE_float("edge_weight", 0.0, "HED edge-structure loss weight.", flag_values=fv)
  flags.DEFINE_string("hed_weights", "hed-vgg16", "HED weights for --edge_weight when --weights has none.",
                      flag_values=fv)
  flags.DEFINE_string("depth", None, "Depth map in content space (brighter = nearer): larger, stronger strokes in "
                      "front.", flag_values=fv)
  flags.DEFINE_integer("depth_regions", defaults.depth_regions, "Depth bins for --depth.", flag_values=fv)
  controls = ("controls (Gatys et al. 2017)", ["style_blend", "style_scale", "style_masks", "preserve_colors",
                                               "color_method", "style_colors", "laplacian_weight", "edge_weight",
                                               "hed_weights", "depth", "depth_regions"])
  tiles = optimization_flags.define_tiles(fv)
  hr = highres_config.HighresConfig()
  flags.DEFINE_integer("start_size", hr.start_size, "Coarse-to-fine pyramid: long side of the first scale (0: one "
                       "scale at --size).", flag_values=fv)
  flags.DEFINE_float("scale_step", hr.scale_step, "Pyramid: size ratio between scales (e.g. 2 or 1.414).",
                     flag_values=fv)
  flags.DEFINE_list("scale_iterations", [], "Pyramid: iterations per scale, coarse to fine (default: --iterations "
                    "at the first scale, fewer in proportion to the pixel count after).", flag_values=fv)
  flags.DEFINE_string("checkpoint_dir", None, "Resume state folder: saved after every scale (and --checkpoint_every "
                      "iterations); a rerun with the same inputs and flags continues from it.", flag_values=fv)
  flags.DEFINE_integer("checkpoint_every", hr.checkpoint_every, "Also checkpoint every N iterations (0: per scale).",
                       flag_values=fv)
  flags.DEFINE_string("coordinator_address", None, "jax.distributed: host:port of process 0 (or env "
                      "NST_JAX_COORDINATOR).", flag_values=fv)
  flags.DEFINE_integer("num_processes", None, "jax.distributed: number of processes (or env NST_JAX_NUM_PROCESSES).",
                       flag_values=fv)
  flags.DEFINE_integer("process_id", None, "jax.distributed: this process (or env NST_JAX_PROCESS_ID).",
                       flag_values=fv)
  pyramid_flags = ("high resolution (pyramid, resume, several hosts)",
                   ["start_size", "scale_step", "scale_iterations", "checkpoint_dir", "checkpoint_every",
                    "coordinator_address", "num_processes", "process_id"])
  sections = [images, optimisation, losses, controls, tiles, pyramid_flags]
  if synthesis:  # no content image: its flags are not synthesize's (and are refused as stylize's)
    for name in CONTENT_ONLY_FLAGS:
      delattr(fv, name)
    sections = [(title, [n for n in names if n not in CONTENT_ONLY_FLAGS]) for title, names in sections]
  return sections


def flag_value(fv: flags.FlagValues, name: str, default):
  """The value of flag `name`, or `default` where the command does not define it (synthesize)."""
  return fv[name].value if name in fv else default


def config_from_flags(fv: flags.FlagValues) -> StylizeConfig:
  """The run's `StylizeConfig` from the parsed flags."""
  layer_sets = tuple(optimization_flags.layers([n.strip() for n in part.split(",") if n.strip()])
                     for part in fv.style_layer_sets.split(";")) if fv.style_layer_sets else ()
  defaults = StylizeConfig()
  content_flags = {name: flag_value(fv, name, getattr(defaults, name)) for name in CONTENT_ONLY_FLAGS
                   if hasattr(defaults, name)}  # synthesize: the defaults, which its checks ignore
  content_flags["content_layers"] = tuple(content_flags["content_layers"])
  return StylizeConfig(
      size=fv.size, iterations=fv.iterations, optimizer=fv.optimizer, learning_rate=fv.learning_rate,
      optimizer_options=optimization_flags.optimizer_options(fv), lr_schedule=fv.lr_schedule,
      normalize_gradients=fv.normalize_gradients, style_weight=fv.style_weight, tv_weight=fv.tv_weight,
      range_weight=fv.range_weight, style_layers=optimization_flags.layers(fv.style_layers),
      style_blend=shared_flags.floats(fv.style_blend, "--style_blend"),
      style_scale=shared_flags.floats(fv.style_scale, "--style_scale"), style_layer_sets=layer_sets,
      style_layer_weights=optim.parse_options(fv.style_layer_weights, flag="--style_layer_weights"),
      style_loss=fv.style_loss, style_colors=fv.style_colors,
      init=fv.init, init_noise=fv.init_noise, start_colors=fv.start_colors, pooling=fv.pooling,
      normalize_network=fv.normalize_network,
      style_layer_balance=fv.style_layer_balance, seed=fv.seed, save_every=max(0, flag_value(fv, "save_every", 0)),
      log_every=max(1, fv.log_every), stall_rtol=optimization_flags.stall_rtol(fv), **content_flags)


def _start_distributed(fv: flags.FlagValues) -> None:
  if fv.coordinator_address or fv.num_processes is not None or fv.process_id is not None:
    if not fv.coordinator_address:
      raise NSTError("--num_processes/--process_id need --coordinator_address")
    distributed.init_distributed(coordinator=fv.coordinator_address, num_processes=fv.num_processes,
                                 process_id=fv.process_id)
  else:
    distributed.init_distributed()  # from the environment, if set


@field_flags.fields_as_flags
def run(fv: flags.FlagValues, positional: list[str], *, synthesis: bool = False) -> pathlib.Path:
  """Stylises (or, with `synthesis`, synthesises a texture) with the parsed flags, writes --output, returns its path."""
  del positional
  hr = optimization_flags.highres_config(
      fv, start_size=fv.start_size, scale_step=fv.scale_step,
      scale_iterations=shared_flags.integers(fv.scale_iterations, "--scale_iterations"),
      checkpoint_dir=fv.checkpoint_dir, checkpoint_every=fv.checkpoint_every)
  output = image_io.check_output_path(fv.output, bits=fv.output_bits)
  validation.check_learning_rate(fv.learning_rate)
  if fv.checkpoint_dir:
    validation.check_writable_folder(fv.checkpoint_dir, "--checkpoint_dir")
  config = config_from_flags(fv)
  _start_distributed(fv)
  if synthesis and not fv.style:
    raise NSTError("synthesize needs --style")
  content = None if synthesis else shared_flags.load_content(fv.content)
  styles = shared_flags.load_styles(fv.style)
  shape = image_io.long_side_shape((content if content is not None else styles[0]).shape, config.size)
  masks = shared_flags.load_masks(fv.style_masks, height=shape[0], width=shape[1]) or None
  depth = structure.load_depth(fv.depth, height=shape[0], width=shape[1]) if not synthesis and fv.depth else None
  if config.init not in ("colors", "content", "noise", "style"):
    image_io.load_image(config.init, what="--init image")  # fail before loading weights
  weights = resolve_weights(fv.weights)
  hed = resolve_weights(fv.hed_weights) if config.edge_weight > 0 and not weights.extras else None
  # Refuse bad layer names etc. before the memory estimate below needs them.
  check_request(config, weights.arch, num_styles=len(styles), has_content=content is not None)
  # Every scale's working size, the smallest (first) one for the content and each style.
  sizes = highres_config.scale_sizes(config.size, hr.start_size, hr.scale_step)
  if content is not None:
    validation.check_working_size(
        content.shape, sizes[0], what=f"content image {fv.content or '(demo)'!r}",
        minimum=validation.min_side(weights.arch, config.content_layers + config.style_layers),
        flag="--start_size" if len(sizes) > 1 else "--size")
  scales = per_style(config.style_scale, len(styles), "--style_scale")
  validation.check_style_working_sizes(styles, fv.style, [round(sizes[0] * k) for k in scales],
                                       validation.min_side(weights.arch, config.style_layers))
  layers = (config.content_layers if content is not None else ()) + tuple(
      octaves.split(name)[0] for name in config.style_layers)
  use_highres = any(fv[name].present for name in HIGHRES_FLAGS) or (
      vgg.estimate_training_bytes(weights.arch, shape, layers) > memory.budget_bytes(hr.max_memory_gb))
  start = time.perf_counter()
  try:
    if use_highres:
      if masks or depth is not None:
        raise NSTError("--style_masks and --depth are not supported by the high-resolution engine (tiling/pyramid)")
      highres_config.check_highres_request(hr, resolve_plan(config, arch=weights.arch, num_styles=len(styles),
                                                            has_content=content is not None))
      result, reports = gatys.stylize_highres(content=content, styles=styles, weights=weights, config=config, hr=hr,
                                                synthesis_shape=shape if synthesis else None)
      done = " -> ".join(f"{r.shape[1]}x{r.shape[0]} ({r.iterations} it, {r.tiles} tile(s) of {r.tile}+2*{r.halo})"
                         for r in reports) or "resumed, nothing left to run"
    else:
      result = gatys.stylize(content=content, styles=styles, weights=weights, config=config, style_masks=masks,
                             depth=depth, hed_weights=hed, synthesis_shape=shape if synthesis else None,
                             on_intermediate=lambda i, image: image_io.save_image(
                                 optimization_flags.intermediate_path(output, i), image))
      terms = ", ".join(f"{k} {v:.4g}" for k, v in result.final_terms.items())
      done = f"{len(result.loss_history)} iterations"
  except NonFiniteLossError as e:
    saved = image_io.save_image(optimization_flags.intermediate_path(output, e.iteration), e.last_good_image)
    raise NSTError(f"{e}; the last finite image is in {saved}") from None
  image_io.save_image(output, result.image, bits=fv.output_bits)
  seconds = f"{time.perf_counter() - start:.1f} s"
  if use_highres:
    print(f"wrote {output} ({result.image.shape[1]}x{result.image.shape[0]}; {done}; {seconds})")
  else:
    print(f"wrote {output} ({result.image.shape[1]}x{result.image.shape[0]}, {done}, {seconds}; {terms})")
  return output


STYLIZE = Command(
    name="stylize", prog="python -m nst_jax stylize", usage="--content PHOTO --style PAINTING[,...] [flags]",
    description="Optimises the image so that its VGG features match the content photo's and its Gram matrices the "
                "style's. Run times measured on a 2-core CPU are in the README (section Use).",
    define_flags=define_flags, run=run, input_flags=INPUT_FLAGS)
SYNTHESIZE = Command(
    name="synthesize", prog="python -m nst_jax synthesize", usage="--style PAINTING[,...] [flags]",
    description="Gatys et al.'s texture synthesis: optimises noise until its Gram matrices match the style's.",
    define_flags=lambda fv: define_flags(fv, synthesis=True),
    run=lambda fv, positional: run(fv, positional, synthesis=True), input_flags=INPUT_FLAGS)
