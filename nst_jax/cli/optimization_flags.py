"""Flags shared by the optimisation commands (`stylize`, `synthesize`, `photoreal`) and the helpers that read them.

Optimiser, loss weights and layers, and tiles.
"""

from __future__ import annotations

import pathlib

from absl import flags

from nst_jax import optim
from nst_jax.cli.shared_flags import Section
from nst_jax.errors import NSTError
from nst_jax.highres.highres_config import HighresConfig
from nst_jax.objective.config import STYLE_LAYER_PRESETS


def define_optimizer(fv: flags.FlagValues, *, iterations: int | None, iterations_help: str, optimizer: str,
                     log_every: int, stall_rtol: float | None, seed: int) -> Section:
  """Defines the optimiser flags on `fv` with the command's defaults; returns their help section."""
  flags.DEFINE_integer("iterations", iterations, iterations_help, flag_values=fv)
  flags.DEFINE_string("optimizer", optimizer, "lbfgs (one loss evaluation per iteration, backtracking line "
                      "search), lbfgs_zoom (optax's L-BFGS, strong-Wolfe zoom line search), or any optax optimizer "
                      "by name (adam, sgd, adamw, rmsprop, ...).", flag_values=fv)
  flags.DEFINE_float("learning_rate", None, "Step size for first-order optimizers (image in [0,1]); for lbfgs a "
                     "fixed step instead of the line search.", flag_values=fv)
  flags.DEFINE_string("optimizer_args", "", "Extra optimizer hyperparameters, e.g. momentum=0.9,nesterov=true "
                      "(sgd), b1=0.8,weight_decay=1e-4 (adamw), memory_size=20 (lbfgs).", flag_values=fv)
  flags.DEFINE_float("stall_rtol", stall_rtol, "L-BFGS stops early once 10 iterations lower the loss by less than "
                     "this fraction (float32 precision reached); 0 or less: run every iteration.", flag_values=fv)
  flags.DEFINE_integer("seed", seed, "Random seed (noise init).", flag_values=fv)
  flags.DEFINE_integer("log_every", log_every, "Optimizer steps per progress update (one host round trip).",
                       flag_values=fv)
  return "optimisation", ["iterations", "optimizer", "learning_rate", "optimizer_args", "stall_rtol", "seed",
                          "log_every"]


def define_loss(fv: flags.FlagValues, *, defaults, init_help: str) -> Section:
  """Defines the loss weight and layer flags common to stylize and photoreal; returns their help section.

  `defaults` holds each command's own default values (a config), `init_help` the help of its --init."""
  flags.DEFINE_float("content_weight", defaults.content_weight, "Weight of the content loss.", flag_values=fv)
  flags.DEFINE_float("style_weight", defaults.style_weight, "Weight of the style loss.", flag_values=fv)
  flags.DEFINE_float("tv_weight", defaults.tv_weight, "Weight of the total-variation loss.", flag_values=fv)
  flags.DEFINE_float("range_weight", defaults.range_weight, "Weight of a penalty on pixel values outside [0, 1] "
                     "(the saved image is clipped).", flag_values=fv)
  flags.DEFINE_list("content_layers", list(defaults.content_layers), "Layers for the content loss.", flag_values=fv)
  flags.DEFINE_list("style_layers", list(defaults.style_layers), "Layers for the style loss (equal weights; "
                    "relu2_1@4 is relu2_1 of the image downsampled 4x, for larger marks), or a stroke-size preset: "
                    f"{', '.join(STYLE_LAYER_PRESETS)}.", flag_values=fv)
  flags.DEFINE_enum("pooling", defaults.pooling, ["max", "avg"], "Pooling in VGG (Gatys et al. prefer avg).",
                    flag_values=fv)
  flags.DEFINE_string("init", defaults.init, init_help, flag_values=fv)
  return "losses", ["content_weight", "style_weight", "tv_weight", "range_weight", "content_layers", "style_layers",
                    "pooling", "init"]


def define_tiles(fv: flags.FlagValues) -> Section:
  """Defines the tiled-engine flags (tile size, halo, overlap, batch, memory budget, precision, output bits)."""
  hr = HighresConfig()
  flags.DEFINE_integer("tile_size", None, "Tiled loss: tile interior in pixels; 0 = automatic from --max_memory_gb "
                       "(default: tiles only when the image does not fit the budget).", flag_values=fv)
  flags.DEFINE_integer("tile_halo", None, "Tiled loss: context around each tile (default: exact, the receptive "
                       "radius of the deepest layer + --tile_overlap).", flag_values=fv)
  flags.DEFINE_integer("tile_overlap", hr.tile_overlap, "Tiled loss: half-width of the blending ramp across tile "
                       "borders, pixels.", flag_values=fv)
  flags.DEFINE_integer("tile_batch", hr.tile_batch, "Tiled loss: tiles per device per step.", flag_values=fv)
  flags.DEFINE_float("max_memory_gb", hr.max_memory_gb, "Memory budget per device (0: 80% of its memory).",
                     flag_values=fv)
  flags.DEFINE_string("precision", hr.precision, "VGG compute precision: fp32 or bf16 (image and losses stay fp32).",
                      flag_values=fv)
  flags.DEFINE_integer("output_bits", 8, "Bits per channel of the output: 8, or 16 for .png/.tif.", flag_values=fv)
  return "high resolution (tiles)", ["tile_size", "tile_halo", "tile_overlap", "tile_batch", "max_memory_gb",
                                     "precision", "output_bits"]


TILE_FLAGS = ("tile_size", "tile_halo", "tile_overlap", "tile_batch", "max_memory_gb", "precision")


def layers(names: list[str]) -> tuple[str, ...]:
  """Layer names, or the layers of a stroke-size preset."""
  if len(names) == 1 and names[0] in STYLE_LAYER_PRESETS:
    return STYLE_LAYER_PRESETS[names[0]]
  return tuple(names)


def stall_rtol(fv: flags.FlagValues) -> float | None:
  """--stall_rtol as the config takes it: None (run every iteration) for 0 or less."""
  return fv.stall_rtol if fv.stall_rtol and fv.stall_rtol > 0 else None


def optimizer_options(fv: flags.FlagValues) -> dict:
  """--optimizer_args parsed into keyword arguments of the optimiser (`optim.parse_options`)."""
  return optim.parse_options(fv.optimizer_args)


def tiles_requested(fv: flags.FlagValues) -> bool:
  """Whether any tile flag is given on the command line."""
  return any(fv[name].present for name in TILE_FLAGS)


def highres_config(fv: flags.FlagValues, **pyramid) -> HighresConfig:
  """The tile flags (and, for stylize, the pyramid and checkpoint settings in `pyramid`) as a HighresConfig.

  Raises NSTError for an --output_bits other than 8 or 16."""
  if fv.output_bits not in (8, 16):
    raise NSTError(f"--output_bits must be 8 or 16, got {fv.output_bits}")
  return HighresConfig(tile_size=fv.tile_size or 0, tile_halo=fv.tile_halo, tile_overlap=fv.tile_overlap,
                       tile_batch=fv.tile_batch, max_memory_gb=fv.max_memory_gb, precision=fv.precision, **pyramid)


def intermediate_path(output: pathlib.Path, iteration: int) -> pathlib.Path:
  """The path of the intermediate image saved at `iteration`: OUTPUT_00100.png beside `output`."""
  return output.with_name(f"{output.stem}_{iteration:05d}{output.suffix}")
