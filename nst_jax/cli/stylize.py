"""The `nst-jax` / `python -m nst_jax` command line.

  python -m nst_jax stylize --content A.jpg --style B.jpg --output C.png [--size 512 --iterations 500 ...]
  python -m nst_jax stylize --content A.jpg --style B.jpg,C.jpg --style_blend 0.7,0.3 --preserve_colors luminance
  python -m nst_jax stylize --content A.jpg --style B.jpg,C.jpg --style_masks mb.png,mc.png
  python -m nst_jax synthesize --style B.jpg[,C.jpg] --size 256 --output texture.png
  python -m nst_jax photoreal --content in.png --style tar.png [--content_seg a.png --style_seg b.png] --output o.png
  python -m nst_jax adain --content A.jpg --style B.jpg[,C.jpg] --style_blend 0.7,0.3 --alpha 0.8 --output C.png

Without --content/--style, `stylize` runs on the built-in demo pair (matplotlib's Grace Hopper photo and a
generated swirl painting). Every problem with the input ends in one line `error: ...` and exit status 2.
"""

from __future__ import annotations

import logging
import pathlib
import sys
import time

import numpy as np
from absl import app, flags

from nst_jax import demo, optim
from nst_jax.highres import pyramid as highres
from nst_jax.io import image_io
from nst_jax.losses import color, guidance, segmentation, structure
from nst_jax.methods import adain, gatys, photoreal
from nst_jax.models import vgg
from nst_jax.errors import NSTError, exit_on_error, one_line
from nst_jax.weights.store import resolve_weights

_DEFAULTS = gatys.StylizeConfig()

flags.DEFINE_string("content", None, "Content image (default: matplotlib's grace_hopper.jpg).")
flags.DEFINE_list("style", None, "Style image(s), comma-separated (default: a generated swirl painting).")
flags.DEFINE_string("output", "stylized.png", "Output image (.png, .jpg, .tif, ...), written atomically.")
flags.DEFINE_integer("size", _DEFAULTS.size, "Long side of the output in pixels.")
flags.DEFINE_integer("iterations", _DEFAULTS.iterations, "Optimizer steps.")
flags.DEFINE_string("optimizer", _DEFAULTS.optimizer, "lbfgs, or any optax optimizer by name (adam, sgd, adamw, "
                    "rmsprop, ...).")
flags.DEFINE_float("learning_rate", None, "Step size for first-order optimizers (image in [0,1]); for lbfgs a "
                   "fixed step instead of the line search.")
flags.DEFINE_string("optimizer_args", "", "Extra optimizer hyperparameters, e.g. momentum=0.9,nesterov=true "
                    "(sgd), b1=0.8,weight_decay=1e-4 (adamw), memory_size=20 (lbfgs).")
flags.DEFINE_enum("lr_schedule", _DEFAULTS.lr_schedule, list(optim.SCHEDULES), "Learning-rate schedule.")
flags.DEFINE_bool("normalize_gradients", False, "Divide gradients by their mean magnitude (first-order only).")
flags.DEFINE_float("content_weight", _DEFAULTS.content_weight, "Weight of the content loss.")
flags.DEFINE_float("style_weight", _DEFAULTS.style_weight, "Weight of the style loss.")
flags.DEFINE_float("tv_weight", _DEFAULTS.tv_weight, "Weight of the total-variation loss.")
flags.DEFINE_float("range_weight", _DEFAULTS.range_weight, "Weight of a penalty on pixel values outside [0, 1] "
                   "(the saved image is clipped; photoreal's default is 1e6).")
flags.DEFINE_list("content_layers", list(_DEFAULTS.content_layers), "Layers for the content loss.")
flags.DEFINE_list("style_layers", list(_DEFAULTS.style_layers), "Layers for the style loss (equal weights), or a "
                  f"stroke-size preset: {', '.join(gatys.STYLE_LAYER_PRESETS)}.")
flags.DEFINE_string("style_layer_sets", "", "Per-style layers separated by ';' (scale mixing: e.g. "
                    "'structure;fine' takes coarse structure from the first style, fine texture from the second).")
flags.DEFINE_string("style_layer_weights", "", "Relative style-layer weights w_l, e.g. relu4_1=10,relu5_1=100 "
                    "(unnamed layers 1; normalised to sum 1).")
flags.DEFINE_enum("style_layer_balance", _DEFAULTS.style_layer_balance, list(gatys.STYLE_LAYER_BALANCES),
                  "target: divide each style layer's loss by its value for an all-zero Gram matrix, so every layer "
                  "counts (stroke-size presets, scale mixing, --depth); raise --style_weight (~100).")
flags.DEFINE_list("style_blend", [], "Blend weights of the style images (normalised).")
flags.DEFINE_list("style_scale", ["1"], "Style image size relative to --size, one value or one per style.")
flags.DEFINE_list("style_masks", [], "One mask per style in content space (white = that style).")
flags.DEFINE_enum("style_loss", _DEFAULTS.style_loss, list(gatys.STYLE_LOSSES), "Gram matrices (Gatys) or MRF "
                  "patches (Li & Wand 2016).")
flags.DEFINE_enum("preserve_colors", _DEFAULTS.preserve_colors, list(color.COLOR_MODES),
                  "Keep the content's colours: luminance-only transfer (YIQ) or style colour histogram matching.")
flags.DEFINE_enum("color_method", _DEFAULTS.color_method, ["cholesky", "eigen"], "Histogram matching variant.")
flags.DEFINE_float("laplacian_weight", 0.0, "Laplacian structure loss weight (Li et al. 2017).")
flags.DEFINE_float("edge_weight", 0.0, "HED edge-structure loss weight.")
flags.DEFINE_string("depth", None, "Depth map in content space (brighter = nearer): larger, stronger strokes in front.")
flags.DEFINE_integer("depth_regions", _DEFAULTS.depth_regions, "Depth bins for --depth.")
flags.DEFINE_string("init", _DEFAULTS.init, "Initial image: content, noise, style, or an image path.")
flags.DEFINE_enum("pooling", _DEFAULTS.pooling, ["max", "avg"], "Pooling in VGG (Gatys et al. prefer avg).")
flags.DEFINE_bool("normalize_network", _DEFAULTS.normalize_network, "Rescale every VGG filter to mean activation 1 "
                  "(Gatys et al.) so deep style layers count; the loss scale changes: raise --style_weight (1e4+).")
flags.DEFINE_string("weights", "hed-vgg16", "Weights: a name known to `python -m nst_jax.weights list` or a .npz.")
flags.DEFINE_string("hed_weights", "hed-vgg16", "HED weights for --edge_weight when --weights has none.")
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Random seed (noise init).")
flags.DEFINE_integer("save_every", 0, "Write an intermediate image every N iterations (0: never).")
flags.DEFINE_integer("log_every", _DEFAULTS.log_every, "Report the losses every N iterations.")
flags.DEFINE_float("stall_rtol", _DEFAULTS.stall_rtol, "L-BFGS stops early once 10 iterations lower the loss by "
                   "less than this fraction (float32 precision reached); 0 or less: run every iteration.")
# --- photoreal flags (Luan et al. 2017; `photoreal` also reads --content, --style, --output, --size, --iterations,
# --optimizer, --learning_rate, --optimizer_args, the loss weights and layers, --pooling, --init, --seed, --weights,
# --log_every, --output_bits and the tile flags --tile_size --tile_halo --tile_overlap --tile_batch --max_memory_gb
# --precision; where those are not given it uses the reference's values below, not stylize's defaults) ---
_PHOTOREAL = photoreal.PhotorealConfig()
flags.DEFINE_string("content_seg", None, "photoreal: colour-coded segmentation map of the content (9 colours).")
flags.DEFINE_string("style_seg", None, "photoreal: colour-coded segmentation map of the style image.")
flags.DEFINE_integer("stage1_iterations", None, "photoreal: iterations of stage 1 (segmented style transfer); "
                     f"default --iterations if given, else {_PHOTOREAL.stage1_iterations}.")
flags.DEFINE_integer("stage2_iterations", None, "photoreal: iterations of stage 2 (with the matting Laplacian); "
                     f"default --iterations if given, else {_PHOTOREAL.stage2_iterations}; 0 skips it.")
flags.DEFINE_float("matting_weight", _PHOTOREAL.matting_weight, "photoreal: λ of the photorealism (matting "
                   "Laplacian) term in stage 2, on the image in [0, 1].")
flags.DEFINE_float("matting_eps", _PHOTOREAL.matting_eps, "photoreal: ε of the matting Laplacian.")
flags.DEFINE_bool("smooth", _PHOTOREAL.smooth, "photoreal: local-affine post-processing (joint bilateral).")
flags.DEFINE_float("affine_eps", _PHOTOREAL.affine_eps, "photoreal: ridge regulariser of the 3x3 affine fits.")
flags.DEFINE_integer("smooth_radius", _PHOTOREAL.smooth_radius, "photoreal: joint bilateral window radius.")
flags.DEFINE_float("smooth_sigma_s", _PHOTOREAL.smooth_sigma_s, "photoreal: joint bilateral spatial sigma (px).")
flags.DEFINE_float("smooth_sigma_r", _PHOTOREAL.smooth_sigma_r, "photoreal: joint bilateral range sigma (RGB).")
flags.DEFINE_bool("refine", _PHOTOREAL.refine, "photoreal: guided-filter refinement after smoothing.")
flags.DEFINE_integer("refine_radius", _PHOTOREAL.refine_radius, "photoreal: guided filter radius.")
flags.DEFINE_float("refine_eps", _PHOTOREAL.refine_eps, "photoreal: guided filter epsilon.")
flags.DEFINE_bool("save_stages", False, "photoreal: also write each stage's unsmoothed result as <output>_stageN.")
# --- end of photoreal flags ---
# --- high-resolution flags (nst_jax.highres) ---
_HR = highres.HighresConfig()
flags.DEFINE_integer("start_size", _HR.start_size, "Coarse-to-fine pyramid: long side of the first scale (0: one "
                     "scale at --size).")
flags.DEFINE_float("scale_step", _HR.scale_step, "Pyramid: size ratio between scales (e.g. 2 or 1.414).")
flags.DEFINE_list("scale_iterations", [], "Pyramid: iterations per scale, coarse to fine (default: --iterations "
                  "at the first scale, fewer in proportion to the pixel count after).")
flags.DEFINE_integer("tile_size", None, "Tiled loss: tile interior in pixels; 0 = automatic from --max_memory_gb "
                     "(default: tiles only when the image does not fit the budget). adain: force tiles of this "
                     "many px (multiple of 8).")
flags.DEFINE_integer("tile_halo", None, "Tiled loss: context around each tile (default: exact, the receptive "
                     "radius of the deepest layer + --tile_overlap).")
flags.DEFINE_integer("tile_overlap", _HR.tile_overlap, "Tiled loss: half-width of the blending ramp across tile "
                     "borders, pixels.")
flags.DEFINE_integer("tile_batch", _HR.tile_batch, "Tiled loss: tiles per device per step.")
flags.DEFINE_float("max_memory_gb", _HR.max_memory_gb, "Memory budget per device (0: 80% of its memory).")
flags.DEFINE_string("precision", _HR.precision, "VGG compute precision: fp32 or bf16 (image and losses stay fp32).")
flags.DEFINE_string("checkpoint_dir", None, "Resume state folder: saved after every scale (and --checkpoint_every "
                    "iterations); a rerun with the same inputs and flags continues from it.")
flags.DEFINE_integer("checkpoint_every", _HR.checkpoint_every, "Also checkpoint every N iterations (0: per scale).")
flags.DEFINE_integer("output_bits", 8, "Bits per channel of the output: 8, or 16 for .png/.tif.")
flags.DEFINE_string("coordinator_address", None, "jax.distributed: host:port of process 0 (or env "
                    "NST_JAX_COORDINATOR).")
flags.DEFINE_integer("num_processes", None, "jax.distributed: number of processes (or env NST_JAX_NUM_PROCESSES).")
flags.DEFINE_integer("process_id", None, "jax.distributed: this process (or env NST_JAX_PROCESS_ID).")
_HR_FLAGS = ("start_size", "scale_step", "scale_iterations", "tile_size", "tile_halo", "tile_overlap", "tile_batch",
             "max_memory_gb", "precision", "checkpoint_dir", "checkpoint_every", "coordinator_address")
# photoreal runs both stages at --size in tiles: no pyramid, no checkpoints, no jax.distributed.
_PHOTOREAL_TILE_FLAGS = ("tile_size", "tile_halo", "tile_overlap", "tile_batch", "max_memory_gb", "precision")
# --- end of high-resolution flags ---
# --- AdaIN flags (python -m nst_jax adain; also uses --content --style --style_blend --style_masks --size
# --preserve_colors --weights --output, and --tile_size above) ---
flags.DEFINE_float("alpha", 1.0, "adain: content-style trade-off in [0, 1] (0 = the decoder's reconstruction).")
flags.DEFINE_string("decoder", adain.DEFAULT_DECODER, "adain: decoder .npz, or a name in the weights folder.")
flags.DEFINE_float("max_megapixels", 2.0, "adain: larger images go through tiles normalised with the statistics "
                   "of a thumbnail of the whole image (URST); also the tile size.")
# --- end of AdaIN flags ---
FLAGS = flags.FLAGS

COMMANDS = ("stylize", "synthesize", "photoreal", "adain")


def _floats(values: list[str], flag: str) -> tuple[float, ...]:
  try:
    return tuple(float(v) for v in values)
  except ValueError:
    raise NSTError(f"{flag} expects comma-separated numbers, got {','.join(values)!r}") from None


def _stall_rtol() -> float | None:
  return FLAGS.stall_rtol if FLAGS.stall_rtol and FLAGS.stall_rtol > 0 else None


def _layers(names: list[str]) -> tuple[str, ...]:
  if len(names) == 1 and names[0] in gatys.STYLE_LAYER_PRESETS:
    return gatys.STYLE_LAYER_PRESETS[names[0]]
  return tuple(names)


def _config_from_flags(*, synthesis: bool) -> gatys.StylizeConfig:
  layer_sets = tuple(_layers([n.strip() for n in part.split(",") if n.strip()])
                     for part in FLAGS.style_layer_sets.split(";")) if FLAGS.style_layer_sets else ()
  init = FLAGS.init
  if synthesis and not FLAGS["init"].present:
    init = "noise"
  return gatys.StylizeConfig(
      size=FLAGS.size, iterations=FLAGS.iterations, optimizer=FLAGS.optimizer, learning_rate=FLAGS.learning_rate,
      optimizer_options=optim.parse_options(FLAGS.optimizer_args), lr_schedule=FLAGS.lr_schedule,
      normalize_gradients=FLAGS.normalize_gradients, content_weight=FLAGS.content_weight,
      style_weight=FLAGS.style_weight, tv_weight=FLAGS.tv_weight, range_weight=FLAGS.range_weight,
      content_layers=tuple(FLAGS.content_layers),
      style_layers=_layers(FLAGS.style_layers), style_blend=_floats(FLAGS.style_blend, "--style_blend"),
      style_scale=_floats(FLAGS.style_scale, "--style_scale"), style_layer_sets=layer_sets,
      style_layer_weights=optim.parse_options(FLAGS.style_layer_weights, flag="--style_layer_weights"),
      style_loss=FLAGS.style_loss, preserve_colors=FLAGS.preserve_colors, color_method=FLAGS.color_method,
      laplacian_weight=FLAGS.laplacian_weight, edge_weight=FLAGS.edge_weight, depth_regions=FLAGS.depth_regions,
      init=init, pooling=FLAGS.pooling, normalize_network=FLAGS.normalize_network,
      style_layer_balance=FLAGS.style_layer_balance, seed=FLAGS.seed,
      save_every=max(0, FLAGS.save_every), log_every=max(1, FLAGS.log_every), stall_rtol=_stall_rtol())


def intermediate_path(output: pathlib.Path, iteration: int) -> pathlib.Path:
  return output.with_name(f"{output.stem}_{iteration:05d}{output.suffix}")


def run_adain() -> pathlib.Path:
  """`adain`: one decoder pass (Huang & Belongie 2017) with alpha, style blending, masks and colour control."""
  output = image_io.check_output_path(FLAGS.output)
  if FLAGS["size"].present and FLAGS.size < 16:
    raise NSTError(f"--size must be at least 16 pixels, got {FLAGS.size}")
  if not 0.0 <= FLAGS.alpha <= 1.0:
    raise NSTError(f"--alpha must be in [0, 1], got {FLAGS.alpha}")
  if not FLAGS.max_megapixels > 0:
    raise NSTError(f"--max_megapixels must be positive, got {FLAGS.max_megapixels}")
  tiling = None
  if FLAGS.tile_size:
    tiling = adain.Tiling(tile=FLAGS.tile_size, overlap=max(8, FLAGS.tile_size // 8 // 8 * 8),
                          thumbnail=FLAGS.tile_size)
  content = image_io.load_image(FLAGS.content, what="content image") if FLAGS.content else demo.default_content()
  if FLAGS["size"].present:
    content = image_io.resize_long_side(content, FLAGS.size)
  styles = ([image_io.load_image(p, what="style image") for p in FLAGS.style] if FLAGS.style
            else [demo.default_style()])
  blend = _floats(FLAGS.style_blend, "--style_blend") or None
  masks = None
  if FLAGS.style_masks:
    if len(FLAGS.style_masks) != len(styles):
      raise NSTError(f"--style_masks needs one mask per style ({len(styles)}), got {len(FLAGS.style_masks)}")
    masks = np.stack([guidance.load_mask(p, height=content.shape[0], width=content.shape[1])
                      for p in FLAGS.style_masks])
  ckpt = adain.resolve_decoder(FLAGS.decoder)
  model = adain.make_model(resolve_weights(FLAGS.weights), ckpt)
  start = time.perf_counter()
  result = adain.stylize(content, styles, model=model, alpha=FLAGS.alpha, style_weights=blend, masks=masks,
                         preserve_colors=FLAGS.preserve_colors, max_pixels=int(FLAGS.max_megapixels * 2**20),
                         tiling=tiling)
  image_io.save_image(output, result)
  print(f"wrote {output} ({result.shape[1]}x{result.shape[0]}, alpha {FLAGS.alpha}, "
        f"{time.perf_counter() - start:.1f} s)")
  return output


def _given(name: str, reference):
  """The flag's value if the user gave it, else the reference's default."""
  return FLAGS[name].value if FLAGS[name].present else reference


def run_photoreal() -> pathlib.Path:
  refused = [f"--{name}" for name in _HR_FLAGS + ("num_processes", "process_id")
             if FLAGS[name].present and name not in _PHOTOREAL_TILE_FLAGS]
  if refused:
    raise NSTError(f"photoreal does not take {', '.join(refused)}: it runs both stages at --size (tiled with "
                   f"--tile_size etc.), without a pyramid, checkpoints or jax.distributed")
  hr = _highres_from_flags()
  output = image_io.check_output_path(FLAGS.output, bits=FLAGS.output_bits)
  if not FLAGS.content or not FLAGS.style:
    raise NSTError("photoreal needs --content and --style")
  if len(FLAGS.style) != 1:
    raise NSTError(f"photoreal takes one --style image, got {len(FLAGS.style)}")
  if (FLAGS.content_seg is None) != (FLAGS.style_seg is None):
    raise NSTError("give both --content_seg and --style_seg, or neither")
  iterations = FLAGS.iterations if FLAGS["iterations"].present else None
  ref = _PHOTOREAL
  config = photoreal.PhotorealConfig(
      size=_given("size", ref.size),
      stage1_iterations=next(v for v in (FLAGS.stage1_iterations, iterations, ref.stage1_iterations) if v is not None),
      stage2_iterations=next(v for v in (FLAGS.stage2_iterations, iterations, ref.stage2_iterations) if v is not None),
      optimizer=FLAGS.optimizer, learning_rate=FLAGS.learning_rate,
      optimizer_options=optim.parse_options(FLAGS.optimizer_args),
      content_weight=_given("content_weight", ref.content_weight),
      style_weight=_given("style_weight", ref.style_weight),
      tv_weight=_given("tv_weight", ref.tv_weight), range_weight=_given("range_weight", ref.range_weight),
      matting_weight=FLAGS.matting_weight, matting_eps=FLAGS.matting_eps,
      content_layers=tuple(_given("content_layers", list(ref.content_layers))),
      style_layers=_layers(_given("style_layers", list(ref.style_layers))), pooling=_given("pooling", ref.pooling),
      init=_given("init", ref.init), smooth=FLAGS.smooth, affine_eps=FLAGS.affine_eps,
      smooth_radius=FLAGS.smooth_radius, smooth_sigma_s=FLAGS.smooth_sigma_s, smooth_sigma_r=FLAGS.smooth_sigma_r,
      refine=FLAGS.refine, refine_radius=FLAGS.refine_radius, refine_eps=FLAGS.refine_eps, seed=FLAGS.seed,
      log_every=max(1, FLAGS.log_every), stall_rtol=_stall_rtol())
  if config.size < 16:
    raise NSTError(f"--size must be at least 16 pixels, got {config.size}")
  photoreal.validate(config, hr)
  content = image_io.load_image(FLAGS.content, what="content image")
  style = image_io.load_image(FLAGS.style[0], what="style image")
  content_seg = segmentation.load_map(FLAGS.content_seg, what="--content_seg map") if FLAGS.content_seg else None
  style_seg = segmentation.load_map(FLAGS.style_seg, what="--style_seg map") if FLAGS.style_seg else None
  if config.init not in ("mean", "content", "noise", "style"):
    image_io.load_image(config.init, what="--init image")  # fail before loading weights
  weights = resolve_weights(FLAGS.weights)
  # The tiled engine on request (any tile flag), or when one untiled VGG pass would not fit the memory budget.
  shape = image_io.long_side_shape(content.shape, config.size)
  use_tiles = any(FLAGS[name].present for name in _PHOTOREAL_TILE_FLAGS) or vgg.estimate_training_bytes(
      weights.arch, shape, config.content_layers + config.style_layers) > highres.budget_bytes(hr)
  start = time.perf_counter()

  def save_stage(stage, image):
    if FLAGS.save_stages:
      image_io.save_image(output.with_name(f"{output.stem}_stage{stage}{output.suffix}"), image,
                          bits=FLAGS.output_bits)

  try:
    result = photoreal.photoreal(content=content, style=style, weights=weights, config=config,
                                 content_seg=content_seg, style_seg=style_seg, on_stage=save_stage,
                                 hr=hr if use_tiles else None)
  except gatys.NonFiniteLossError as e:
    saved = image_io.save_image(intermediate_path(output, e.iteration), e.last_good_image)
    raise NSTError(f"{e}; the last finite image is in {saved}") from None
  image_io.save_image(output, result.image, bits=FLAGS.output_bits)
  last = result.stage2 or result.stage1
  terms = ", ".join(f"{k} {v:.4g}" for k, v in last.final_terms.items())
  grid = result.grid
  tiles = f", {grid.num_tiles} tile(s) of {grid.tile}+2*{grid.halo}" if grid else ""
  ran = "+".join(str(len(stage.loss_history)) for stage in (result.stage1, result.stage2) if stage)  # stall stops
  print(f"wrote {output} ({result.image.shape[1]}x{result.image.shape[0]}, {ran} iterations{tiles}, "
        f"{time.perf_counter() - start:.1f} s; {terms})")
  return output


def _highres_from_flags() -> highres.HighresConfig:
  if FLAGS.output_bits not in (8, 16):
    raise NSTError(f"--output_bits must be 8 or 16, got {FLAGS.output_bits}")
  try:
    iterations = tuple(int(v) for v in FLAGS.scale_iterations)
  except ValueError:
    raise NSTError(f"--scale_iterations expects comma-separated integers, got {','.join(FLAGS.scale_iterations)!r}"
                   ) from None
  return highres.HighresConfig(
      start_size=FLAGS.start_size, scale_step=FLAGS.scale_step, scale_iterations=iterations,
      tile_size=FLAGS.tile_size or 0, tile_halo=FLAGS.tile_halo, tile_overlap=FLAGS.tile_overlap,
      tile_batch=FLAGS.tile_batch, max_memory_gb=FLAGS.max_memory_gb, precision=FLAGS.precision,
      checkpoint_dir=FLAGS.checkpoint_dir, checkpoint_every=FLAGS.checkpoint_every)


def run_command(command: str) -> pathlib.Path:
  if command == "adain":
    return run_adain()
  if command == "photoreal":
    return run_photoreal()
  synthesis = command == "synthesize"
  hr = _highres_from_flags()
  output = image_io.check_output_path(FLAGS.output, bits=FLAGS.output_bits)
  config = _config_from_flags(synthesis=synthesis)
  if FLAGS.coordinator_address or FLAGS.num_processes is not None or FLAGS.process_id is not None:
    if not FLAGS.coordinator_address:
      raise NSTError("--num_processes/--process_id need --coordinator_address")
    highres.init_distributed(coordinator=FLAGS.coordinator_address, num_processes=FLAGS.num_processes,
                             process_id=FLAGS.process_id)
  else:
    highres.init_distributed()  # from the environment, if set
  if config.size < 16:
    raise NSTError(f"--size must be at least 16 pixels, got {config.size}")
  if synthesis and FLAGS.content:
    raise NSTError("synthesize takes no --content; use stylize")
  if synthesis and not FLAGS.style:
    raise NSTError("synthesize needs --style")
  content = None
  if not synthesis:
    content = (image_io.load_image(FLAGS.content, what="content image") if FLAGS.content
               else demo.default_content())
  styles = ([image_io.load_image(p, what="style image") for p in FLAGS.style] if FLAGS.style
            else [demo.default_style()])
  shape = (image_io.long_side_shape(content.shape, config.size) if content is not None
           else image_io.long_side_shape(styles[0].shape, config.size))
  masks = [guidance.load_mask(p, height=shape[0], width=shape[1]) for p in FLAGS.style_masks] or None
  depth = structure.load_depth(FLAGS.depth, height=shape[0], width=shape[1]) if FLAGS.depth else None
  if depth is not None and synthesis:
    raise NSTError("--depth needs a content image")
  if config.init not in ("content", "noise", "style"):
    image_io.load_image(config.init, what="--init image")  # fail before loading weights
  weights = resolve_weights(FLAGS.weights)
  hed = None
  if config.edge_weight > 0 and not weights.extras:
    hed = resolve_weights(FLAGS.hed_weights)
  # Refuse bad layer names etc. before the memory estimate below needs them.
  gatys.validate(config, weights.arch, num_styles=len(styles), has_content=content is not None)
  layers = (config.content_layers if content is not None else ()) + tuple(config.style_layers)
  use_highres = any(FLAGS[name].present for name in _HR_FLAGS) or (
      vgg.estimate_training_bytes(weights.arch, shape, layers) > highres.budget_bytes(hr))
  start = time.perf_counter()
  if use_highres:
    if masks or depth is not None:
      raise NSTError("--style_masks and --depth are not supported by the high-resolution engine (tiling/pyramid)")
    highres.validate_highres(hr, config)
    try:
      result, reports = highres.stylize_highres(content=content, styles=styles, weights=weights, config=config,
                                                hr=hr, synthesis_shape=shape if synthesis else None)
    except gatys.NonFiniteLossError as e:
      saved = image_io.save_image(intermediate_path(output, e.iteration), e.last_good_image, bits=FLAGS.output_bits)
      raise NSTError(f"{e}; the last finite image is in {saved}") from None
    image_io.save_image(output, result.image, bits=FLAGS.output_bits)
    scales = " -> ".join(f"{r.shape[1]}x{r.shape[0]} ({r.iterations} it, {r.tiles} tile(s) of {r.tile}+2*{r.halo})"
                         for r in reports) or "resumed, nothing left to run"
    print(f"wrote {output} ({result.image.shape[1]}x{result.image.shape[0]}; {scales}; "
          f"{time.perf_counter() - start:.1f} s)")
    return output

  def save_intermediate(iteration, image):
    image_io.save_image(intermediate_path(output, iteration), image)

  try:
    result = gatys.stylize(content=content, styles=styles, weights=weights, config=config, style_masks=masks,
                           depth=depth, hed_weights=hed, synthesis_shape=shape if synthesis else None,
                           on_intermediate=save_intermediate)
  except gatys.NonFiniteLossError as e:
    saved = image_io.save_image(intermediate_path(output, e.iteration), e.last_good_image)
    raise NSTError(f"{e}; the last finite image is in {saved}") from None
  image_io.save_image(output, result.image, bits=FLAGS.output_bits)
  terms = ", ".join(f"{k} {v:.4g}" for k, v in result.final_terms.items())
  print(f"wrote {output} ({result.image.shape[1]}x{result.image.shape[0]}, {len(result.loss_history)} iterations, "
        f"{time.perf_counter() - start:.1f} s; {terms})")
  return output


def main(argv: list[str]) -> None:
  # JAX logs backend probing ("Unable to initialize backend 'tpu'") at INFO, which absl prints by default: a stray
  # stderr line on every run that would also sit above any `error:` line.
  logging.getLogger("jax").setLevel(logging.WARNING)
  command = argv[1] if len(argv) > 1 else None
  if command not in COMMANDS or len(argv) > 2:
    extra = " ".join(argv[1:]) or "(none)"
    sys.stderr.write(f"error: expected one command from {', '.join(COMMANDS)}, got {extra}\n")
    sys.exit(2)
  try:
    with exit_on_error():
      run_command(command)
  except MemoryError:
    sys.stderr.write("error: out of memory; choose a smaller --size\n")
    sys.exit(2)
  except KeyboardInterrupt:
    sys.stderr.write("error: interrupted\n")
    sys.exit(130)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's default parser prints 'FATAL Flags parsing error' plus a hint and exits 1; a bad flag value is a user
  error like any other, so it gets the same one-line `error:` and exit status 2."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    sys.stderr.write(f"error: {one_line(str(e))}\n")
    sys.exit(2)


def run() -> None:
  """Console-script entry point."""
  app.run(main, flags_parser=parse_flags)
