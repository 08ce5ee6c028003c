"""The `nst-jax` / `python -m nst_jax` command line.

  python -m nst_jax stylize --content A.jpg --style B.jpg --output C.png [--size 512 --iterations 500 ...]
  python -m nst_jax stylize --content A.jpg --style B.jpg,C.jpg --style_blend 0.7,0.3 --preserve_colors luminance
  python -m nst_jax stylize --content A.jpg --style B.jpg,C.jpg --style_masks mb.png,mc.png
  python -m nst_jax synthesize --style B.jpg[,C.jpg] --size 256 --output texture.png
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

from nst_jax import adain, color, demo, guidance, image_io, optim, structure, stylize as gatys
from nst_jax.errors import NSTError
from nst_jax.weights import resolve_weights

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
flags.DEFINE_list("content_layers", list(_DEFAULTS.content_layers), "Layers for the content loss.")
flags.DEFINE_list("style_layers", list(_DEFAULTS.style_layers), "Layers for the style loss (equal weights), or a "
                  f"stroke-size preset: {', '.join(gatys.STYLE_LAYER_PRESETS)}.")
flags.DEFINE_string("style_layer_sets", "", "Per-style layers separated by ';' (scale mixing: e.g. "
                    "'structure;fine' takes coarse structure from the first style, fine texture from the second).")
flags.DEFINE_string("style_layer_weights", "", "Relative style-layer weights w_l, e.g. relu4_1=10,relu5_1=100 "
                    "(unnamed layers 1; normalised to sum 1).")
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
# --- AdaIN flags (python -m nst_jax adain; also uses --content --style --style_blend --style_masks --size
# --preserve_colors --weights --output) ---
flags.DEFINE_float("alpha", 1.0, "adain: content-style trade-off in [0, 1] (0 = the decoder's reconstruction).")
flags.DEFINE_string("decoder", adain.DEFAULT_DECODER, "adain: decoder .npz, or a name in the weights folder.")
flags.DEFINE_float("max_megapixels", 2.0, "adain: larger images go through tiles normalised with the statistics "
                   "of a thumbnail of the whole image (URST); also the tile size.")
flags.DEFINE_integer("tile_size", 0, "adain: force tiling with tiles of this many px (multiple of 8; 0 = by "
                     "--max_megapixels).")
# --- end of AdaIN flags ---
FLAGS = flags.FLAGS

COMMANDS = ("stylize", "synthesize", "adain")


def _floats(values: list[str], flag: str) -> tuple[float, ...]:
  try:
    return tuple(float(v) for v in values)
  except ValueError:
    raise NSTError(f"{flag} expects comma-separated numbers, got {','.join(values)!r}") from None


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
      style_weight=FLAGS.style_weight, tv_weight=FLAGS.tv_weight, content_layers=tuple(FLAGS.content_layers),
      style_layers=_layers(FLAGS.style_layers), style_blend=_floats(FLAGS.style_blend, "--style_blend"),
      style_scale=_floats(FLAGS.style_scale, "--style_scale"), style_layer_sets=layer_sets,
      style_layer_weights=optim.parse_options(FLAGS.style_layer_weights, flag="--style_layer_weights"),
      style_loss=FLAGS.style_loss, preserve_colors=FLAGS.preserve_colors, color_method=FLAGS.color_method,
      laplacian_weight=FLAGS.laplacian_weight, edge_weight=FLAGS.edge_weight, depth_regions=FLAGS.depth_regions,
      init=init, pooling=FLAGS.pooling, normalize_network=FLAGS.normalize_network, seed=FLAGS.seed,
      save_every=max(0, FLAGS.save_every), log_every=max(1, FLAGS.log_every))


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


def run_command(command: str) -> pathlib.Path:
  if command == "adain":
    return run_adain()
  synthesis = command == "synthesize"
  output = image_io.check_output_path(FLAGS.output)
  config = _config_from_flags(synthesis=synthesis)
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
  start = time.perf_counter()

  def save_intermediate(iteration, image):
    image_io.save_image(intermediate_path(output, iteration), image)

  try:
    result = gatys.stylize(content=content, styles=styles, weights=weights, config=config, style_masks=masks,
                           depth=depth, hed_weights=hed, synthesis_shape=shape if synthesis else None,
                           on_intermediate=save_intermediate)
  except gatys.NonFiniteLossError as e:
    saved = image_io.save_image(intermediate_path(output, e.iteration), e.last_good_image)
    raise NSTError(f"{e}; the last finite image is in {saved}") from None
  image_io.save_image(output, result.image)
  terms = ", ".join(f"{k} {v:.4g}" for k, v in result.final_terms.items())
  print(f"wrote {output} ({result.image.shape[1]}x{result.image.shape[0]}, {config.iterations} iterations, "
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
    run_command(command)
  except NSTError as e:
    message = " ".join(str(e).splitlines())  # one line, even when a library message spans several
    sys.stderr.write(f"error: {message}\n")
    sys.exit(2)
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
    sys.stderr.write(f"error: {' '.join(str(e).splitlines())}\n")
    sys.exit(2)


def run() -> None:
  """Console-script entry point."""
  app.run(main, flags_parser=parse_flags)
