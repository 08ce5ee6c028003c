"""`python -m nst_jax train wct`: trains the WCT reconstruction decoders as one resumable job, and exports them.

  python -m nst_jax train wct --out_dir runs/wct                   # train (rerun the same command to resume)
  python -m nst_jax train wct --out_dir runs/wct --export weights/wct-decoders-hed-vgg16.npz
  python -m nst_jax train wct --upsampling unpool --out_dir runs/photowct --init_decoders wct-decoders-hed-vgg16

--upsampling unpool trains PhotoWCT's decoders (max-unpooling with the encoder's switches); started from the
nearest-upsampling decoders (--init_decoders: the same parameter shapes), each level begins a new run at step 0.

Data: --content_dirs and --style_dirs (default ../shared/data/train/photos and paintings, relative to the
repository); the held-out split of `nst_jax.methods.adain.evaluation` is never trained on, and export measures each
level's reconstruction PSNR on it.
"""

from __future__ import annotations

import dataclasses
import pathlib

from absl import flags

from nst_jax import demo
from nst_jax.cli import output_guard
from nst_jax.cli.command import Command, Sections
from nst_jax.errors import NSTError
from nst_jax.io import training_images
from nst_jax.methods.adain import evaluation as adain_eval
from nst_jax.methods.wct import runs, train as wct_train
from nst_jax.models import wct_decoder
from nst_jax.weights import store

DATA = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"


def define_flags(fv: flags.FlagValues) -> Sections:
  """Defines the command's flags on `fv`; returns the help sections."""
  flags.DEFINE_string("out_dir", None, "Folder of the run: one checkpoint folder per level.", flag_values=fv)
  flags.DEFINE_list("levels", list(wct_decoder.LEVELS), "Levels to train (or export).", flag_values=fv)
  flags.DEFINE_list("steps", [], "Steps per level, in the order of --levels (default "
                    + ", ".join(f"{k} {v}" for k, v in runs.DEFAULT_STEPS.items()) + ").", flag_values=fv)
  flags.DEFINE_integer("width", 32, "Decoder width (64: the encoder's channel counts).", flag_values=fv)
  flags.DEFINE_enum("padding", "reflect", ["reflect", "zero"], "Decoder convolution padding.", flag_values=fv)
  flags.DEFINE_enum("upsampling", "nearest", list(wct_decoder.UPSAMPLINGS), "Decoder upsampling: nearest neighbour "
                    "(WCT) or max-unpooling with the encoder's pooling switches (PhotoWCT).", flag_values=fv)
  flags.DEFINE_integer("crop", 128, "Training crop side in px.", flag_values=fv)
  flags.DEFINE_integer("batch", 4, "Photos per step, and as many paintings.", flag_values=fv)
  flags.DEFINE_float("lr", 1e-3, "Peak Adam learning rate (warm-up, cosine decay).", flag_values=fv)
  flags.DEFINE_float("pixel_weight", 10.0, "Weight of the pixel MSE (RGB in [0, 1]; the relative feature loss has "
                     "weight --feature_weight): 10 makes it the larger term, about the photo's own variance apart.",
                     flag_values=fv)
  flags.DEFINE_float("feature_weight", 1.0, "Weight of the relative feature loss at the level.", flag_values=fv)
  flags.DEFINE_float("stylized_weight", 0.0, "Weight of inverting WCT-transformed features (each photo of the batch "
                     "with a painting's statistics), relative like the feature loss; 0: reconstruction only.",
                     flag_values=fv)
  flags.DEFINE_integer("seed", 0, "Seeds the initial parameters and every batch.", flag_values=fv)
  flags.DEFINE_float("chunk_seconds", 600.0, "Seconds per level before moving to the next (round-robin).",
                     flag_values=fv)
  flags.DEFINE_list("content_dirs", [str(DATA / "train" / "photos")], "Folders of content photos.", flag_values=fv)
  flags.DEFINE_list("style_dirs", [str(DATA / "train" / "paintings")], "Folders of paintings.", flag_values=fv)
  flags.DEFINE_string("export", None, "Instead of training, write the decoder file of --levels here.",
                      flag_values=fv)
  flags.DEFINE_string("init_decoders", None, "A level without a checkpoint in --out_dir starts from this exported "
                      "decoder file (its parameters and step, fresh Adam moments), e.g. the shipped one.",
                      flag_values=fv)
  flags.DEFINE_list("default_levels", [], "With --export: the levels `wct` runs by default with this file (default: "
                    "all exported).", flag_values=fv)
  flags.DEFINE_string("weights", "hed-vgg16", "The encoder's VGG weights.", flag_values=fv)
  return [("run", ["out_dir", "levels", "steps", "chunk_seconds", "init_decoders", "export", "default_levels",
                   "weights"]),
          ("training", ["width", "padding", "upsampling", "crop", "batch", "lr", "pixel_weight", "feature_weight",
                        "stylized_weight", "seed"]),
          ("data", ["content_dirs", "style_dirs"])]


def configs(fv: flags.FlagValues) -> list[wct_train.TrainConfig]:
  """One `TrainConfig` per --levels entry, with --steps (one count per level) or each level's default steps."""
  steps = [int(s) for s in fv.steps] if fv.steps else [runs.DEFAULT_STEPS[l] for l in fv.levels]
  if len(steps) != len(fv.levels):
    raise NSTError(f"--steps needs one count per level ({len(fv.levels)}), got {len(steps)}")
  return [wct_train.TrainConfig(layer=layer, width=fv.width, padding=fv.padding, crop=fv.crop, batch=fv.batch,
                                steps=n, lr=fv.lr, pixel_weight=fv.pixel_weight,
                                feature_weight=fv.feature_weight, stylized_weight=fv.stylized_weight,
                                seed=fv.seed, upsampling=fv.upsampling)
          for layer, n in zip(fv.levels, steps)]


def check_export_path(export: pathlib.Path, *, weights_file: pathlib.Path | None) -> None:
  """Checks --export before any work: it may replace an earlier decoder file (e.g. the shipped one).

  Never a folder, the encoder's weights or any other file."""
  if export.is_dir():
    raise NSTError(f"--export {str(export)!r} is a folder; give a file path, e.g. {str(export / 'decoders.npz')!r}")
  if weights_file is not None and output_guard.same_file(export, weights_file):
    raise NSTError(f"--export {str(export)!r} is the encoder's weights file: it would be overwritten; choose another "
                   "path")
  if export.exists():
    try:
      wct_decoder.load_decoders(export)
    except NSTError:
      raise NSTError(f"--export {str(export)!r} exists and is not a WCT decoder file: it would be overwritten; "
                     "choose another path") from None


def run(fv: flags.FlagValues, positional: list[str]) -> None:
  """Trains every level round-robin (resuming each), or with --export writes the decoder file."""
  del positional
  if not fv.out_dir:
    raise NSTError("--out_dir is required")
  for layer in fv.levels:
    if layer not in wct_decoder.LEVELS:
      raise NSTError(f"--levels: unknown level {layer!r}; expected some of {', '.join(wct_decoder.LEVELS)}")
  if pathlib.Path(fv.out_dir).exists() and not pathlib.Path(fv.out_dir).is_dir():
    raise NSTError(f"--out_dir {fv.out_dir!r} is a file; give the run's folder (created if missing)")
  weights = store.resolve_weights(fv.weights)
  holdout = adain_eval.holdout_names()
  if fv.export:
    check_export_path(pathlib.Path(fv.export), weights_file=store.find_trained_file(fv.weights))
    if set(fv.default_levels) - set(fv.levels):
      raise NSTError(f"--default_levels must be among --levels, got {','.join(fv.default_levels)}")
    if (DATA / "train").is_dir():
      contents, styles = adain_eval.load_holdout(DATA)
      images = {**contents, **styles}
    else:  # without the shared data: the demo photo and painting stand in for the held-out split
      images = {"demo_content": demo.default_content(), "demo_style": demo.default_style()}
      print(f"[data] no {DATA / 'train'}: held-out PSNR measured on the demo images instead")
    command = "python -m nst_jax train wct" + (f" --upsampling {fv.upsampling}" if fv.upsampling != "nearest" else "")
    runs.export(fv.out_dir, fv.levels, weights, fv.export, holdout=images,
                info={"data": {"content_dirs": fv.content_dirs, "style_dirs": fv.style_dirs,
                               "holdout": list(holdout)}, "command": command,
                      "default_levels": fv.default_levels or list(fv.levels)})
    print(f"wrote {fv.export}")
    return
  contents = training_images.ImagePool(training_images.list_images(fv.content_dirs, exclude=holdout), max_side=512)
  styles = training_images.ImagePool(training_images.list_images(fv.style_dirs, exclude=holdout), max_side=512)
  print(f"{len(contents)} photos, {len(styles)} paintings; levels {', '.join(fv.levels)}")
  init = None
  if fv.init_decoders:
    from nst_jax.cli.wct import resolve_decoders  # pylint: disable=import-outside-toplevel
    init = resolve_decoders(fv.init_decoders)
    if init.encoder_sha256 != weights.source_sha256:
      raise NSTError(f"--init_decoders were trained with another encoder ({init.encoder_sha256[:12]})")
  runs.train_levels(configs(fv), weights, contents, styles, out_dir=fv.out_dir, chunk_seconds=fv.chunk_seconds,
                    init=init)


COMMAND = Command(
    name="train wct", prog="python -m nst_jax train wct", usage="--out_dir DIR [--export FILE] [flags]",
    description="Trains (or resumes, or exports) the reconstruction decoders of WCT, one per level.",
    define_flags=define_flags, run=run)
# The command's name before `train adain` joined it; kept so that existing scripts and notes still run.
DEPRECATED_NAME = dataclasses.replace(
    COMMAND, name="train-wct", prog="python -m nst_jax train-wct",
    description="Deprecated name of `python -m nst_jax train wct` (the same command). " + COMMAND.description)
