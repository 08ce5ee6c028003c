"""The `nst-jax` / `python -m nst_jax` command line: `stylize` (Gatys et al.).

  python -m nst_jax stylize --content A.jpg --style B.jpg --output C.png [--size 512 --iterations 500 ...]

Without --content/--style it runs on the built-in demo pair (matplotlib's Grace Hopper photo and a generated
swirl painting). Every problem with the input ends in one line `error: ...` and exit status 2.
"""

from __future__ import annotations

import logging
import pathlib
import sys
import time

from absl import app, flags

from nst_jax import demo, image_io, stylize as gatys
from nst_jax.errors import NSTError
from nst_jax.weights import resolve_weights

_DEFAULTS = gatys.StylizeConfig()

flags.DEFINE_string("content", None, "Content image (default: matplotlib's grace_hopper.jpg).")
flags.DEFINE_string("style", None, "Style image (default: a generated swirl painting).")
flags.DEFINE_string("output", "stylized.png", "Output image (.png, .jpg, .tif, ...), written atomically.")
flags.DEFINE_integer("size", _DEFAULTS.size, "Long side of the output in pixels.")
flags.DEFINE_integer("iterations", _DEFAULTS.iterations, "Optimizer steps.")
flags.DEFINE_string("optimizer", _DEFAULTS.optimizer, "lbfgs, or an optax optimizer name (adam, sgd, adamw, ...).")
flags.DEFINE_float("learning_rate", None, "Step size for first-order optimizers (image in [0,1]); for lbfgs a "
                   "fixed step instead of the line search.")
flags.DEFINE_float("content_weight", _DEFAULTS.content_weight, "Weight of the content loss.")
flags.DEFINE_float("style_weight", _DEFAULTS.style_weight, "Weight of the style loss.")
flags.DEFINE_float("tv_weight", _DEFAULTS.tv_weight, "Weight of the total-variation loss.")
flags.DEFINE_list("content_layers", list(_DEFAULTS.content_layers), "Layers for the content loss.")
flags.DEFINE_list("style_layers", list(_DEFAULTS.style_layers), "Layers for the style loss (equal weights).")
flags.DEFINE_string("init", _DEFAULTS.init, "Initial image: content, noise, style, or an image path.")
flags.DEFINE_enum("pooling", _DEFAULTS.pooling, ["max", "avg"], "Pooling in VGG (Gatys et al. prefer avg).")
flags.DEFINE_string("weights", "hed-vgg16", "Weights: a name known to `python -m nst_jax.weights list` or a .npz.")
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Random seed (noise init).")
flags.DEFINE_integer("save_every", 0, "Write an intermediate image every N iterations (0: never).")
flags.DEFINE_integer("log_every", _DEFAULTS.log_every, "Report the losses every N iterations.")
FLAGS = flags.FLAGS

COMMANDS = ("stylize",)


def _config_from_flags() -> gatys.StylizeConfig:
  return gatys.StylizeConfig(
      size=FLAGS.size, iterations=FLAGS.iterations, optimizer=FLAGS.optimizer, learning_rate=FLAGS.learning_rate,
      content_weight=FLAGS.content_weight, style_weight=FLAGS.style_weight, tv_weight=FLAGS.tv_weight,
      content_layers=tuple(FLAGS.content_layers), style_layers=tuple(FLAGS.style_layers), init=FLAGS.init,
      pooling=FLAGS.pooling, seed=FLAGS.seed, save_every=max(0, FLAGS.save_every),
      log_every=max(1, FLAGS.log_every))


def intermediate_path(output: pathlib.Path, iteration: int) -> pathlib.Path:
  return output.with_name(f"{output.stem}_{iteration:05d}{output.suffix}")


def run_stylize() -> pathlib.Path:
  output = image_io.check_output_path(FLAGS.output)
  config = _config_from_flags()
  if config.size < 16:
    raise NSTError(f"--size must be at least 16 pixels, got {config.size}")
  content = (image_io.load_image(FLAGS.content, what="content image") if FLAGS.content
             else demo.default_content())
  style = image_io.load_image(FLAGS.style, what="style image") if FLAGS.style else demo.default_style()
  if config.init not in ("content", "noise", "style"):
    image_io.load_image(config.init, what="--init image")  # fail before loading weights
  weights = resolve_weights(FLAGS.weights)
  start = time.perf_counter()

  def save_intermediate(iteration, image):
    image_io.save_image(intermediate_path(output, iteration), image)

  try:
    result = gatys.stylize(content=content, style=style, weights=weights, config=config,
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
    run_stylize()
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
