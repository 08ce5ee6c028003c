"""`python -m nst_jax photoreal`: photorealistic style transfer (Luan et al. 2017), optionally in tiles.

  python -m nst_jax photoreal --content in.png --style tar.png --content_seg in_seg.png --style_seg tar_seg.png \
      --output out.png

Both stages and the local-affine post-processing. Defaults are this project's calibrated objective (relative
content and style errors, per-pixel matting energy, weights chosen on the paper's examples;
`nst_jax.methods.photoreal`, docs/photoreal.md): stage 2 only, from the content with each region's colours moved to
the style's. `--preset paper` takes the reference's size and iterations, `--objective reference` its loss weights
in its own units.
"""

from __future__ import annotations

import pathlib
import time

from absl import flags

from nst_jax import optim
from nst_jax.cli import field_flags, optimization_flags, shared_flags, validation
from nst_jax.cli import wct as wct_cli
from nst_jax.cli.command import Command, Sections
from nst_jax.engines.optimize import NonFiniteLossError
from nst_jax.errors import NSTError
from nst_jax.highres import memory
from nst_jax.io import image_io
from nst_jax.losses import segmentation
from nst_jax.methods import blend_tiles, photoreal
from nst_jax.methods.photoreal import closed_form, photowct
from nst_jax.models import vgg, wct_decoder
from nst_jax.objective.config import check_request
from nst_jax.weights.store import resolve_weights

DEFAULT_DECODERS = "photowct-decoders-hed-vgg16"


def define_flags(fv: flags.FlagValues) -> Sections:
  """Defines the command's flags on `fv`; returns the help sections."""
  ref = photoreal.PhotorealConfig()
  images = shared_flags.define_images(fv, content="Content photo.", style="Style photo (one).", output="stylized.png",
                                      size=ref.size, size_help="Long side of the output in pixels.")
  flags.DEFINE_string("content_seg", None, "Colour-coded segmentation map of the content (9 colours).",
                      flag_values=fv)
  flags.DEFINE_string("style_seg", None, "Colour-coded segmentation map of the style image.", flag_values=fv)
  images[1].extend(["content_seg", "style_seg"])
  flags.DEFINE_enum("method", "optimize", ["optimize", "wct"], "optimize: Luan et al.'s optimisation (minutes); "
                    "wct: Li et al. 2018's PhotoWCT and closed-form smoothing (seconds).", flag_values=fv)
  flags.DEFINE_string("decoders", DEFAULT_DECODERS, "wct: the PhotoWCT (unpooling) decoder .npz, or a name in the "
                      "weights folder.", flag_values=fv)
  flags.DEFINE_float("alpha", 1.0, "wct: content/style blend of the features at every level (1: all style).",
                     flag_values=fv)
  flags.DEFINE_float("smoothing_lambda", photowct.DEFAULT_LAMBDA, "wct: λ of the closed-form smoothing (smaller: "
                     f"smoother; the paper's: {closed_form.LAMBDA:g}).", flag_values=fv)
  flags.DEFINE_list("levels", list(photowct.DEFAULT_LEVELS), "wct: the PhotoWCT levels to run, any of "
                    + ", ".join(photowct.LEVELS) + ".", flag_values=fv)
  flags.DEFINE_integer("rounds", photowct.DEFAULT_ROUNDS, "wct: run PhotoWCT and the smoothing this many times, each "
                       "round on the last one's result (more of the style's statistics).", flag_values=fv)
  images[1][:0] = ["method"]
  images[1].extend(["decoders", "levels", "alpha", "smoothing_lambda", "rounds"])
  optimisation = optimization_flags.define_optimizer(
      fv, iterations=None, iterations_help=f"Iterations of each stage that runs (default: stage 2 only, "
      f"{ref.stage2_iterations}; with --preset paper both stages, {photoreal.PAPER_PRESET.stage1_iterations} + "
      f"{photoreal.PAPER_PRESET.stage2_iterations}); --stage1_iterations/--stage2_iterations override it.",
      optimizer=ref.optimizer,
      log_every=ref.log_every, stall_rtol=ref.stall_rtol, seed=ref.seed)
  flags.DEFINE_integer("stage1_iterations", None, "Iterations of stage 1 (segmented style transfer).",
                       flag_values=fv)
  flags.DEFINE_integer("stage2_iterations", None, "Iterations of stage 2 (with the matting Laplacian); 0 skips it.",
                       flag_values=fv)
  flags.DEFINE_integer("stage1_size", ref.stage1_size, "Long side of stage 1 (solved small, then upsampled for "
                       "stage 2); 0: --size.", flag_values=fv)
  flags.DEFINE_enum("preset", "default", ["default", "paper"], "paper: the reference's 700 px and 1000 + 1000 "
                    "iterations (about 2 hours on a 2-core CPU), unless --size or the iteration flags are given.",
                    flag_values=fv)
  optimisation[1][1:1] = ["preset", "stage1_iterations", "stage2_iterations", "stage1_size"]
  losses = optimization_flags.define_loss(
      fv, defaults=ref, init_help="Initial image: colors (the content with each region's colour mean and "
      "covariance moved to the style region's), mean (the reference's near-constant start), content, noise, style, "
      "or an image path.")
  flags.DEFINE_enum("objective", ref.objective, list(photoreal.OBJECTIVES), "calibrated: relative content and "
                    "style errors and the per-pixel matting energy; reference: the reference code's objective in its "
                    "own units. Weights left unset take the objective's defaults.", flag_values=fv)
  flags.DEFINE_float("matting_weight", None, "λ of the photorealism (matting Laplacian) term in stage 2 (default: "
                     f"{photoreal.CALIBRATED_WEIGHTS['matting']:g} calibrated, per pixel; "
                     f"{photoreal.REFERENCE_WEIGHTS['matting']:g} reference, summed).", flag_values=fv)
  flags.DEFINE_float("matting_eps", ref.matting_eps, "ε of the matting Laplacian.", flag_values=fv)
  flags.DEFINE_string("style_layer_weights", "", "Calibrated objective: relative style-layer weights, e.g. "
                      "relu1_1=1,relu5_1=0.1 (default: "
                      + ",".join(f"{k}={v:g}" for k, v in photoreal.CALIBRATED_LAYER_WEIGHTS.items()) + ").",
                      flag_values=fv)
  losses[1][:0] = ["objective"]
  losses[1].extend(["matting_weight", "matting_eps", "style_layer_weights"])
  flags.DEFINE_bool("smooth", ref.smooth, "Post-processing: local-affine (joint bilateral) after optimize, the "
                    "closed-form smoothing after wct.", flag_values=fv)
  flags.DEFINE_float("affine_eps", ref.affine_eps, "Ridge regulariser of the 3x3 affine fits.", flag_values=fv)
  flags.DEFINE_integer("smooth_radius", ref.smooth_radius, "Joint bilateral window radius.", flag_values=fv)
  flags.DEFINE_float("smooth_sigma_s", ref.smooth_sigma_s, "Joint bilateral spatial sigma (px).", flag_values=fv)
  flags.DEFINE_float("smooth_sigma_r", ref.smooth_sigma_r, "Joint bilateral range sigma (RGB).", flag_values=fv)
  flags.DEFINE_bool("refine", ref.refine, "Guided-filter refinement after smoothing (with --method wct only when "
                    "given).", flag_values=fv)
  flags.DEFINE_integer("refine_radius", ref.refine_radius, "Guided filter radius.", flag_values=fv)
  flags.DEFINE_float("refine_eps", ref.refine_eps, "Guided filter epsilon.", flag_values=fv)
  flags.DEFINE_bool("region_chroma", ref.region_chroma, "Before the post-processing, give each region the YIQ "
                    "chroma mean and std of its style region (a gray target gives a gray result; no false colour in "
                    "flat areas).", flag_values=fv)
  flags.DEFINE_bool("chroma_fit", ref.chroma_fit, "optimize: before --region_chroma, make each region's chroma a "
                    "quadratic function of the content's colour (removes colour patches in flat areas).",
                    flag_values=fv)
  flags.DEFINE_bool("save_stages", False, "Also write each stage's unsmoothed result as <output>_stageN.",
                    flag_values=fv)
  post = ("post-processing", ["chroma_fit", "region_chroma", "smooth", "affine_eps", "smooth_radius",
                              "smooth_sigma_s", "smooth_sigma_r", "refine", "refine_radius", "refine_eps",
                              "save_stages"])
  return [images, optimisation, losses, post, optimization_flags.define_tiles(fv)]


def stage_iterations(fv: flags.FlagValues, ref: photoreal.PhotorealConfig) -> tuple[int, int]:
  """(stage 1, stage 2) iterations from the flags and the preset's config `ref`.

  --iterations sets each stage that runs by default (only stage 2, or both with --preset paper), never switching
  stage 1 on; --stage1_iterations/--stage2_iterations override it."""
  validation.check_iterations(fv.iterations)
  stage1 = ref.stage1_iterations if fv.iterations is None or not ref.stage1_iterations else fv.iterations
  stage2 = ref.stage2_iterations if fv.iterations is None else fv.iterations
  return (stage1 if fv.stage1_iterations is None else fv.stage1_iterations,
          stage2 if fv.stage2_iterations is None else fv.stage2_iterations)


def config_from_flags(fv: flags.FlagValues) -> photoreal.PhotorealConfig:
  """The run's `PhotorealConfig` from the parsed flags (the preset's values where a flag is not given)."""
  ref = photoreal.PAPER_PRESET if fv.preset == "paper" else photoreal.PhotorealConfig()
  stage1, stage2 = stage_iterations(fv, ref)
  layer_weights = optim.parse_options(fv.style_layer_weights, flag="--style_layer_weights") or None
  return photoreal.PhotorealConfig(
      size=fv.size if fv["size"].present else ref.size, objective=fv.objective, stage1_size=fv.stage1_size,
      style_layer_weights=layer_weights, stage1_iterations=stage1, stage2_iterations=stage2, optimizer=fv.optimizer,
      learning_rate=fv.learning_rate, optimizer_options=optimization_flags.optimizer_options(fv),
      content_weight=fv.content_weight, style_weight=fv.style_weight, tv_weight=fv.tv_weight,
      range_weight=fv.range_weight, matting_weight=fv.matting_weight, matting_eps=fv.matting_eps,
      content_layers=tuple(fv.content_layers), style_layers=optimization_flags.layers(fv.style_layers),
      pooling=fv.pooling,
      init=fv.init, smooth=fv.smooth, affine_eps=fv.affine_eps, smooth_radius=fv.smooth_radius,
      smooth_sigma_s=fv.smooth_sigma_s, smooth_sigma_r=fv.smooth_sigma_r, refine=fv.refine,
      refine_radius=fv.refine_radius, refine_eps=fv.refine_eps, region_chroma=fv.region_chroma,
      chroma_fit=fv.chroma_fit, seed=fv.seed,
      log_every=max(1, fv.log_every),
      stall_rtol=optimization_flags.stall_rtol(fv))


@field_flags.fields_as_flags
def run(fv: flags.FlagValues, positional: list[str]) -> pathlib.Path:
  """Runs both stages and the post-processing with the parsed flags and writes --output; returns its path."""
  del positional
  hr = optimization_flags.highres_config(fv)
  output = image_io.check_output_path(fv.output, bits=fv.output_bits)
  if not fv.content or not fv.style:
    raise NSTError("photoreal needs --content and --style")
  if len(fv.style) != 1:
    raise NSTError(f"photoreal takes one --style image, got {len(fv.style)}")
  if (fv.content_seg is None) != (fv.style_seg is None):
    raise NSTError("give both --content_seg and --style_seg, or neither")
  validation.check_learning_rate(fv.learning_rate)
  config = config_from_flags(fv)
  photoreal.check_tiled_request(config, hr)
  content = shared_flags.load_content(fv.content)
  style = shared_flags.load_style(fv.style[0])
  content_seg = style_seg = None
  if fv.content_seg:
    content_seg = segmentation.load_map(fv.content_seg, what="--content_seg map")
    style_seg = segmentation.load_map(fv.style_seg, what="--style_seg map")
    image_io.warn_if_stretched(content_seg.shape, content.shape, what=f"--content_seg map {fv.content_seg!r}")
    image_io.warn_if_stretched(style_seg.shape, style.shape, what=f"--style_seg map {fv.style_seg!r}",
                               target_name="the style image")
  if fv.method == "wct":
    return run_photowct(fv, output, content, style, content_seg, style_seg)
  if config.init not in (*photoreal.INITS, "style"):
    image_io.load_image(config.init, what="--init image")  # fail before loading weights
  weights = resolve_weights(fv.weights)
  # Layer names of this network, before the memory estimate below needs them.
  for stage in [n for n, its in ((1, config.stage1_iterations), (2, config.stage2_iterations)) if its]:
    check_request(photoreal.stylize_config(config, stage=stage, shape=(config.size, config.size), input_scale=1.0),
                  weights.arch)
  for size, flag in ((config.size, "--size"), (config.stage1_size if config.stage1_iterations else 0,
                                                "--stage1_size")):
    if size:
      validation.check_working_size(content.shape, size, what=f"content image {fv.content!r}", flag=flag,
                                    minimum=validation.min_side(weights.arch, config.content_layers
                                                                + config.style_layers))
  validation.check_style_working_sizes([style], fv.style, [config.size],
                                       validation.min_side(weights.arch, config.style_layers))
  # The tiled engine on request (any tile flag), or when one untiled VGG pass would not fit the memory budget.
  shape = image_io.long_side_shape(content.shape, config.size)
  use_tiles = optimization_flags.tiles_requested(fv) or vgg.estimate_training_bytes(
      weights.arch, shape, config.content_layers + config.style_layers) > memory.budget_bytes(hr.max_memory_gb)
  start = time.perf_counter()

  def save_stage(stage, image):
    if fv.save_stages:
      image_io.save_image(output.with_name(f"{output.stem}_stage{stage}{output.suffix}"), image,
                          bits=fv.output_bits)

  try:
    result = photoreal.photoreal(content=content, style=style, weights=weights, config=config,
                                 content_seg=content_seg, style_seg=style_seg, on_stage=save_stage,
                                 hr=hr if use_tiles else None)
  except NonFiniteLossError as e:
    saved = image_io.save_image(optimization_flags.intermediate_path(output, e.iteration), e.last_good_image)
    raise NSTError(f"{e}; the last finite image is in {saved}") from None
  image_io.save_image(output, result.image, bits=fv.output_bits)
  last = result.stage2 or result.stage1
  terms = ", ".join(f"{k} {v:.4g}" for k, v in last.final_terms.items())
  grid = result.grid
  tiles = f", {grid.num_tiles} tile(s) of {grid.tile}+2*{grid.halo}" if grid else ""
  ran = "+".join(str(len(stage.loss_history)) for stage in (result.stage1, result.stage2) if stage)  # stall stops
  print(f"wrote {output} ({result.image.shape[1]}x{result.image.shape[0]}, {ran} iterations{tiles}, "
        f"{time.perf_counter() - start:.1f} s; {terms})")
  return output


def resolve_photowct_decoders(name_or_path: str) -> wct_decoder.DecoderSet:
  """A PhotoWCT decoder .npz path, or NAME looked up as NAME.npz in the weights folders."""
  return wct_cli.resolve_decoders(name_or_path, kind="PhotoWCT",
                                  train_command="python -m nst_jax train wct --upsampling unpool")


def run_photowct(fv: flags.FlagValues, output: pathlib.Path, content, style, content_seg, style_seg) -> pathlib.Path:
  """`--method wct`: PhotoWCT at --size, the closed-form smoothing (--smooth) and, if --refine is given, the guided
  filter."""
  if not 0.0 <= fv.alpha <= 1.0:
    raise NSTError(f"--alpha must be in [0, 1], got {fv.alpha}")
  if not fv.smoothing_lambda > 0:
    raise NSTError(f"--smoothing_lambda must be positive, got {fv.smoothing_lambda}")
  decoders = resolve_photowct_decoders(fv.decoders)
  validation.check_working_size(content.shape, fv.size, what=f"content image {fv.content!r}", flag="--size",
                                minimum=8)
  if not 1 <= fv.rounds <= 5:
    raise NSTError(f"--rounds must be from 1 to 5, got {fv.rounds}")
  tiling = None
  if fv.tile_size:  # the tiled engine's flag: with --method wct the side of the square tiles
    if fv.tile_size < 64 or fv.tile_size % 16:
      raise NSTError(f"--tile_size with --method wct must be a multiple of 16 and at least 64, got {fv.tile_size}")
    tiling = blend_tiles.tiling_for_budget(fv.tile_size ** 2)
  model = photowct.make_model(resolve_weights(fv.weights), decoders)
  # The guided filter raised the matting energy of the smoothed PhotoWCT result (docs/photoreal.md): only on request.
  polish = fv.refine and fv["refine"].present
  start = time.perf_counter()
  result = photowct.stylize_at_size(content, style, size=fv.size, model=model, content_seg=content_seg,
                                    style_seg=style_seg, alpha=fv.alpha, levels=fv.levels, smooth=fv.smooth,
                                    lam=fv.smoothing_lambda, matting_eps=fv.matting_eps, polish=polish,
                                    polish_radius=fv.refine_radius, polish_eps=fv.refine_eps,
                                    region_chroma=fv.region_chroma, rounds=fv.rounds,
                                    max_pixels=PHOTOWCT_MAX_PIXELS, tiling=tiling)
  image_io.save_image(output, result.image, bits=fv.output_bits)
  steps = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
  h, w = result.image.shape[:2]
  tiles = blend_tiles.tile_count((h, w), tiling or blend_tiles.tiling_for_budget(PHOTOWCT_MAX_PIXELS))
  shown = f", {tiles} tiles" if tiling or h * w > PHOTOWCT_MAX_PIXELS else ""
  print(f"wrote {output} ({w}x{h}, PhotoWCT{shown}; {steps}; "
        f"{result.smoothing_iterations} smoothing iterations; {time.perf_counter() - start:.1f} s)")
  return output


# Above this many pixels --method wct runs in tiles: the cascade's activations (relu1_1's 64 channels at full size)
# and the closed-form smoothing's precomputed fields (~220 bytes a pixel in float64) of one 2048x2048 tile take
# ~1-2 GB.
PHOTOWCT_MAX_PIXELS = 2048 * 2048

COMMAND = Command(
    name="photoreal", prog="python -m nst_jax photoreal",
    usage="--content PHOTO --style PHOTO [--content_seg MAP --style_seg MAP] [flags]",
    description="Photorealistic style transfer: optimisation (stage 2 with the matting Laplacian; stage 1 without "
                "it on request), then local-affine post-processing; or, with --method wct, PhotoWCT and the "
                "closed-form smoothing (Li et al. 2018). Run times measured on a 2-core CPU are in the "
                "README (section photoreal) and docs/photoreal.md.",
    define_flags=define_flags, run=run,
    input_flags=("content", "style", "content_seg", "style_seg", "init", "weights", "decoders"))
