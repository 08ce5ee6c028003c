"""`python -m nst_jax train adain`: trains, fine-tunes, resumes or exports the AdaIN decoder, or distils its student.

  python -m nst_jax train adain --out_dir runs/adain                     # train (rerun the same command to resume)
  python -m nst_jax train adain --out_dir runs/adain --export_only --export weights/adain-decoder-hed-vgg16.npz

Stages (`nst_jax.methods.adain.train`): the student (`--stage distill --encoder_width 16 --steps 0`: the teacher
pruned and refitted by least squares), reconstruction pre-training (`--stage reconstruct`), then the paper's
objective (`--stage adain`); docs/adain.md has the shipped decoder's commands. A run keeps out_dir/checkpoint.npz
(resumable: rerun the same command), metrics.json and loss_curve.png.

Data: --content_dirs and --style_dirs (default ../shared/data/train/photos and paintings, relative to the
repository; folders of any size are read on demand up to --cache_gb); --highres and --demo_images add more. The
files in --holdout (default the held-out split of `nst_jax.methods.adain.evaluation`) are never read. Without the
shared data it trains on what the flags name (e.g. --demo_images).
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

from absl import flags

from nst_jax import demo
from nst_jax.cli import output_guard
from nst_jax.cli.command import Command, Sections
from nst_jax.errors import NSTError
from nst_jax.io import training_images
from nst_jax.methods.adain import evaluation as adain_eval, runs, train as adain_train
from nst_jax.models import adain_decoder, adain_student
from nst_jax.weights import adain_decoders, store

DATA = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"


def define_flags(fv: flags.FlagValues) -> Sections:
  """Defines the command's flags on `fv`; returns the help sections."""
  define = dict(flag_values=fv)
  flags.DEFINE_list("content_dirs", [str(DATA / "train/photos")], "Folders (or files) of content photos.", **define)
  flags.DEFINE_list("style_dirs", [str(DATA / "train/paintings")], "Folders (or files) of style images.", **define)
  flags.DEFINE_bool("highres", False, "Also use ../shared/data/highres/*_input.jpg as content.", **define)
  flags.DEFINE_bool("demo_images", False, "Add matplotlib's sample photo and generated mosaics (content) and "
                    "paintings (style).", **define)
  flags.DEFINE_list("holdout", list(adain_eval.holdout_names()), "File names (with or without suffix) never used "
                    "for training (default: the held-out split of nst_jax/methods/adain/evaluation.py).", **define)
  flags.DEFINE_enum("stage", "adain", list(adain_train.STAGES), "adain: the paper's objective; reconstruct: the "
                    "decoder inverts the encoder (pixel + relu4_1 losses at alpha 0); distill: train a student "
                    "encoder.", **define)
  flags.DEFINE_integer("encoder_width", 0, "> 0: a student encoder of this width (nst_jax/models/adain_student.py) "
                       "feeds the decoder (distill: the student to train); 0: the teacher VGG.", **define)
  flags.DEFINE_string("student", None, "Student encoder .npz (from --stage distill) or a decoder file that holds "
                      "one; distill without it starts from the teacher pruned to --encoder_width.", **define)
  flags.DEFINE_float("pixel_weight", 0.0, "reconstruct: weight of the pixel MSE.", **define)
  flags.DEFINE_enum("style_norm", "none", list(adain_train.STYLE_NORMS), "relative: each style layer's loss over "
                    "the style's mean-square statistics.", **define)
  flags.DEFINE_enum("schedule", "inverse_time", list(adain_train.SCHEDULES), "Learning-rate schedule.", **define)
  flags.DEFINE_float("ema", 0.0, "Decay of a moving average of the parameters, exported instead (0: off).", **define)
  flags.DEFINE_float("gray_styles", 0.0, "Probability that a style crop is turned gray.", **define)
  flags.DEFINE_enum("loss_net", "teacher", ["teacher", "student"], "Loss network of the adain stage: the teacher "
                    "VGG (paper), or the student encoder (~12x cheaper; then fine-tune with the teacher).", **define)
  flags.DEFINE_bool("skips", False, "The decoder also takes AdaIN of the encoder's relu1_1..relu3_1 (multi-level "
                    "AdaIN skips; nst_jax/models/adain_decoder.py).", **define)
  flags.DEFINE_float("input_scale", 1.0, "The decoder multiplies its inputs by this (hed-vgg16 features have RMS "
                     "10-45: ~1/32 brings them to ~1, so one learning rate suits every input).", **define)
  flags.DEFINE_float("color_weight", 0.0, "Weight of a loss on the output's YIQ channel means and stds against the "
                     "style's (grayscale styles give gray outputs; nst_jax/methods/adain/objective.py).", **define)
  flags.DEFINE_float("gram_weight", 0.0, "Weight of the style Gram matrices' relative error at relu1_1..relu4_1 "
                     "(Gatys et al.'s statistic, beside AdaIN's means and stds).", **define)
  flags.DEFINE_enum("decoder_padding", "reflect", ["reflect", "zero"], "Decoder convolution padding (zero: ~2x "
                    "faster for a thin decoder on a CPU).", **define)
  flags.DEFINE_integer("eval_every", 0, "Held-out learning curve (evaluation.CURVE_*) every N steps (0: off).",
                       **define)
  flags.DEFINE_integer("eval_size", 256, "Long side of the learning-curve evaluation.", **define)
  flags.DEFINE_integer("crop", 96, "Random crop size (px).", **define)
  flags.DEFINE_float("min_scale", 1.0, "Crops come from the image resized so its short side is crop * U(min_scale, "
                     "max_scale), capped at the decoded size (--max_side).", **define)
  flags.DEFINE_float("max_scale", 2.0, "See --min_scale; large values crop at the images' own (--max_side) scale.",
                     **define)
  flags.DEFINE_float("style_hue", 0.0, "Rotate each style crop's hue by U(-1, 1) * style_hue * 180 degrees (0: "
                     "off); more palettes for a decoder trained on few paintings.", **define)
  flags.DEFINE_integer("batch", 4, "Global batch (a multiple of the device count).", **define)
  flags.DEFINE_integer("steps", 100_000, "Total steps (training stops earlier at --max_minutes).", **define)
  flags.DEFINE_float("lr", 1e-4, "Adam learning rate (paper: 1e-4).", **define)
  flags.DEFINE_float("lr_decay", 5e-5, "Inverse-time decay per step: lr / (1 + decay * step) (paper: 5e-5).",
                     **define)
  flags.DEFINE_float("style_weight", 10.0, "Style loss weight.", **define)
  flags.DEFINE_float("content_weight", 1.0, "Content loss weight (reconstruct: of the relu4_1 MSE).", **define)
  flags.DEFINE_integer("width", 64, "Decoder width (64 = the paper's decoder).", **define)
  flags.DEFINE_integer("max_side", 512, "Training images are decoded capped at this long side.", **define)
  flags.DEFINE_float("cache_gb", 8.0, "Decoded images are kept up to this size (GiB, contents and styles together); "
                     "beyond it they are decoded again when drawn, so folders of any size fit in memory.", **define)
  flags.DEFINE_integer("input_threads", 2, "Host threads that decode and crop the batches (more on a GPU machine, "
                       "where a step takes milliseconds).", **define)
  flags.DEFINE_integer("seed", 0, "Seed of initialisation and batches.", **define)
  flags.DEFINE_float("max_minutes", None, "Stop (after a checkpoint) after this much wall time.", **define)
  flags.DEFINE_integer("checkpoint_every", 100, "Checkpoint every N steps.", **define)
  flags.DEFINE_string("weights", "hed-vgg16", "Encoder weights.", **define)
  flags.DEFINE_string("out_dir", "outputs/adain_train", "Checkpoint, metrics.json and loss_curve.png go here.",
                      **define)
  flags.DEFINE_bool("resume", True, "Continue from out_dir/checkpoint.npz when present.", **define)
  flags.DEFINE_string("export", None, "Also write the trained decoder (fp16) here.", **define)
  flags.DEFINE_bool("export_only", False, "Only export out_dir/checkpoint.npz as it is to --export (same flags as "
                    "the run), without training.", **define)
  flags.DEFINE_string("init_decoder", None, "Fine-tune: start from this trained decoder (.npz or name) with fresh "
                      "Adam moments and lr schedule, unless out_dir already holds a checkpoint to resume.", **define)
  return [("run", ["out_dir", "resume", "steps", "max_minutes", "checkpoint_every", "export", "export_only",
                   "init_decoder", "weights", "eval_every", "eval_size"]),
          ("model", ["stage", "width", "skips", "decoder_padding", "input_scale", "encoder_width", "student",
                     "loss_net"]),
          ("training", ["batch", "lr", "lr_decay", "schedule", "ema", "style_weight", "content_weight",
                        "pixel_weight", "color_weight", "gram_weight", "style_norm", "seed"]),
          ("data", ["content_dirs", "style_dirs", "highres", "demo_images", "holdout", "crop", "min_scale",
                    "max_scale", "style_hue", "gray_styles", "max_side", "cache_gb", "input_threads"])]


def config_from(fv: flags.FlagValues) -> adain_train.TrainConfig:
  """The run's `TrainConfig` from the parsed flags."""
  return adain_train.TrainConfig(
      crop=fv.crop, batch=fv.batch, steps=fv.steps, lr=fv.lr, lr_decay=fv.lr_decay, style_weight=fv.style_weight,
      content_weight=fv.content_weight, width=fv.width, seed=fv.seed, min_scale=fv.min_scale,
      max_scale=fv.max_scale, style_hue=fv.style_hue, stage=fv.stage, encoder_width=fv.encoder_width,
      pixel_weight=fv.pixel_weight, style_norm=fv.style_norm, schedule=fv.schedule, ema=fv.ema,
      gray_styles=fv.gray_styles, decoder_padding=fv.decoder_padding, loss_net=fv.loss_net, skips=fv.skips,
      input_scale=fv.input_scale, color_weight=fv.color_weight, gram_weight=fv.gram_weight)


def folders(fv: flags.FlagValues, name: str) -> list[str]:
  """The folders of a list flag: the defaults (../shared/data) may be absent, folders given must exist.

  `list_images` says which does not."""
  if fv[name].present:
    return fv[name].value
  return [d for d in fv[name].value if pathlib.Path(d).exists()]


def sources(fv: flags.FlagValues) -> tuple[list, list]:
  """The content and style images of the run (paths, or arrays for the generated demo paintings)."""
  contents = training_images.list_images(folders(fv, "content_dirs"), exclude=fv.holdout)
  styles = training_images.list_images(folders(fv, "style_dirs"), exclude=fv.holdout)
  if fv.highres and (DATA / "highres").is_dir():
    contents += [p for p in sorted((DATA / "highres").glob("*_input.jpg")) if p.stem not in fv.holdout]
  if fv.demo_images:
    contents += [demo.default_content_path()] + [demo.mosaic_painting(384, seed) for seed in (2, 3)]
    styles += [demo.swirl_painting(384, seed) for seed in range(4)] + [demo.mosaic_painting(384, seed, cell=c)
                                                                       for seed, c in ((0, 12.0), (1, 24.0))]
  return contents, styles


def check_paths(fv: flags.FlagValues) -> None:
  """Checks --out_dir (a folder, or missing) and --export before any work.

  --export may replace an earlier decoder or student file, never a folder, a file this run reads or any other
  file."""
  if pathlib.Path(fv.out_dir).exists() and not pathlib.Path(fv.out_dir).is_dir():
    raise NSTError(f"--out_dir {fv.out_dir!r} is a file; give the run's folder (created if missing)")
  if not fv.export:
    return
  export = pathlib.Path(fv.export)
  if export.is_dir():
    raise NSTError(f"--export {fv.export!r} is a folder; give a file path, e.g. {str(export / 'decoder.npz')!r}")
  out_dir = pathlib.Path(fv.out_dir)
  reads = [("weights", store.find_trained_file(fv.weights)),
           ("student", fv.student and store.find_trained_file(fv.student)),
           ("init_decoder", fv.init_decoder and store.find_trained_file(fv.init_decoder)),
           ("out_dir", out_dir / adain_train.CHECKPOINT_NAME), ("out_dir", out_dir / runs.PRUNED_STUDENT)]
  for name, path in reads:
    if path and output_guard.same_file(export, pathlib.Path(path)):
      raise NSTError(f"--export {fv.export!r} is a file of --{name} that this run reads: it would be overwritten; "
                     "choose another path")
  if export.exists():
    try:
      adain_decoder.load_decoder(export)
    except NSTError:
      try:
        adain_student.load_student(export)
      except NSTError:
        raise NSTError(f"--export {fv.export!r} exists and is not an AdaIN decoder or student file: it would be "
                       "overwritten; choose another path") from None


def run(fv: flags.FlagValues, positional: list[str]) -> None:
  """Trains, resumes or exports the run that the parsed flags describe."""
  del positional
  if fv.cache_gb < 0 or fv.input_threads < 1:
    raise NSTError(f"--cache_gb must be >= 0 and --input_threads >= 1, got {fv.cache_gb}, {fv.input_threads}")
  check_paths(fv)
  weights = store.resolve_weights(fv.weights)
  config = config_from(fv)
  init = None
  if fv.init_decoder:
    init = adain_decoders.resolve_decoder(fv.init_decoder)
    adain_decoders.check_encoder(init, weights)
  content_src, style_src = sources(fv)
  pool = dict(max_side=fv.max_side, cache_bytes=int(fv.cache_gb * 2**30 / 2),  # half each
              threads=fv.input_threads)
  contents = training_images.ImagePool(content_src, **pool)
  styles = training_images.ImagePool(style_src, **pool)
  print(f"{len(contents)} content and {len(styles)} style images; holdout {','.join(fv.holdout)}")
  student = runs.student_for(config, weights, student_file=fv.student, init=init, contents=contents, styles=styles,
                             out_dir=fv.out_dir)
  trainer = adain_train.make_trainer(config, weights, student=student)
  start = time.perf_counter()
  evaluate = None
  if fv.eval_every and config.stage != "distill":
    evaluate = runs.curve_evaluator(trainer, DATA, size=fv.eval_size)
  if fv.export_only:  # the checkpoint as it is (e.g. of a run still going on), no training
    state, history = adain_train.load_checkpoint(pathlib.Path(fv.out_dir) / adain_train.CHECKPOINT_NAME, trainer)
  else:
    state, history = adain_train.train(trainer, contents, styles, out_dir=fv.out_dir, resume=fv.resume,
                                       checkpoint_every=fv.checkpoint_every,
                                       max_seconds=fv.max_minutes * 60 if fv.max_minutes else None,
                                       init_params=None if init is None else init.params,
                                       input_threads=fv.input_threads, evaluate=evaluate, eval_every=fv.eval_every)
  if fv.export:
    given = " ".join(fv[name].serialize() for name in fv if fv[name].present)
    info = {**dataclasses.asdict(config), "steps": state["step"], "init_decoder": fv.init_decoder,
            "init_decoder_info": init.info if init else None, "student": fv.student,
            "final_loss": next((h for h in reversed(history) if "loss" in h), None),
            "content_images": len(contents), "style_images": len(styles), "holdout": list(fv.holdout),
            "wall_s_this_run": time.perf_counter() - start, "command": f"{COMMAND.prog} {given}".strip()}
    runs.export(fv.export, trainer, state, info=info)
    print(f"wrote {fv.export}")


COMMAND = Command(
    name="train adain", prog="python -m nst_jax train adain", usage="[--out_dir DIR] [--export FILE] [flags]",
    description="Trains (or resumes, fine-tunes with --init_decoder, or exports) the AdaIN decoder for an encoder, or "
    "distils its student encoder (--stage distill).",
    define_flags=define_flags, run=run)
