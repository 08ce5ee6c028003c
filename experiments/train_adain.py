"""Trains an AdaIN decoder (Huang & Belongie 2017) for the hed-vgg16 encoder and exports it.

The shipped decoder `weights/adain-decoder-hed-vgg16.npz` (width 16, skips, zero padding, with its width-16 student
encoder) was made on the 2-core CPU, run from the repository root (`-m` so that this checkout's nst_jax is
imported), in three steps: the student (`--stage distill --encoder_width 16 --steps 0`: the teacher pruned and
refitted by least squares), reconstruction pre-training (`--stage reconstruct`), then the paper's objective
(`--stage adain --loss_net student`); the exact commands and the held-out numbers are in README ("AdaIN") and
experiments/ADAIN_NOTES.md section 5. Rerunning a command resumes from out_dir/checkpoint.npz.

Data: --content_dirs and --style_dirs (default ../shared/data/train/photos and paintings; COCO/WikiArt-sized folders
are read on demand up to --cache_gb); --highres and --demo_images add more. The files in --holdout (default the
held-out split of nst_jax/methods/adain_eval.py, the evaluation set of experiments/adain_figures.py) are never read.
Expected result: the running loss falls (the shipped run's: 3.5e3 at step 10 -> 1.2e3 at step 1000); out_dir holds
checkpoint.npz (resumable: rerun the same command), metrics.json and loss_curve.png. Without ../shared/data it
trains on the demo images only.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
import time

import jax

from absl import app, flags

import numpy as np

from nst_jax import demo
from nst_jax.errors import NSTError, exit_on_error
from nst_jax.methods.adain import evaluation as adain_eval, stylize as adain, train as adain_train
from nst_jax.models import adain_decoder, adain_student
from nst_jax.weights.store import resolve_weights

DATA = pathlib.Path(__file__).resolve().parent.parent / ".." / "shared" / "data"

flags.DEFINE_list("content_dirs", [str(DATA / "train/photos")], "Folders (or files) of content photos.")
flags.DEFINE_list("style_dirs", [str(DATA / "train/paintings")], "Folders (or files) of style images.")
flags.DEFINE_bool("highres", False, "Also use ../shared/data/highres/*_input.jpg as content.")
flags.DEFINE_bool("demo_images", False, "Add matplotlib's sample photo and generated mosaics (content) and "
                  "paintings (style).")
flags.DEFINE_list("holdout", list(adain_eval.holdout_names()), "File names (with or without suffix) never used "
                  "for training (default: the held-out split of nst_jax/methods/adain_eval.py).")
flags.DEFINE_enum("stage", "adain", list(adain_train.STAGES), "adain: the paper's objective; reconstruct: the "
                  "decoder inverts the encoder (pixel + relu4_1 losses at alpha 0); distill: train a student encoder.")
flags.DEFINE_integer("encoder_width", 0, "> 0: a student encoder of this width (nst_jax/models/adain_student.py) "
                     "feeds the decoder (distill: the student to train); 0: the teacher VGG.")
flags.DEFINE_string("student", None, "Student encoder .npz (from --stage distill) or a decoder file that holds one; "
                    "distill without it starts from the teacher pruned to --encoder_width.")
flags.DEFINE_float("pixel_weight", 0.0, "reconstruct: weight of the pixel MSE.")
flags.DEFINE_enum("style_norm", "none", list(adain_train.STYLE_NORMS), "relative: each style layer's loss over the "
                  "style's mean-square statistics.")
flags.DEFINE_enum("schedule", "inverse_time", list(adain_train.SCHEDULES), "Learning-rate schedule.")
flags.DEFINE_float("ema", 0.0, "Decay of a moving average of the parameters, exported instead (0: off).")
flags.DEFINE_float("gray_styles", 0.0, "Probability that a style crop is turned gray.")
flags.DEFINE_enum("loss_net", "teacher", ["teacher", "student"], "Loss network of the adain stage: the teacher VGG "
                  "(paper), or the student encoder (~12x cheaper; then fine-tune with the teacher).")
flags.DEFINE_bool("skips", False, "The decoder also takes AdaIN of the encoder's relu1_1..relu3_1 (multi-level "
                  "AdaIN skips; nst_jax/models/adain_decoder.py).")
flags.DEFINE_float("input_scale", 1.0, "The decoder multiplies its inputs by this (hed-vgg16 features have RMS "
                   "10-45: ~1/32 brings them to ~1, so one learning rate suits every input).")
flags.DEFINE_float("color_weight", 0.0, "Weight of a loss on the output's YIQ channel means and stds against the "
                   "style's (grayscale styles give gray outputs; nst_jax/methods/adain_objective.py).")
flags.DEFINE_enum("decoder_padding", "reflect", ["reflect", "zero"], "Decoder convolution padding (zero: ~2x faster "
                  "for a thin decoder on a CPU).")
flags.DEFINE_integer("eval_every", 0, "Held-out learning curve (adain_eval.CURVE_*) every N steps (0: off).")
flags.DEFINE_integer("eval_size", 256, "Long side of the learning-curve evaluation.")
flags.DEFINE_integer("crop", 96, "Random crop size (px).")
flags.DEFINE_float("min_scale", 1.0, "Crops come from the image resized so its short side is crop * U(min_scale, "
                   "max_scale), capped at the decoded size (--max_side).")
flags.DEFINE_float("max_scale", 2.0, "See --min_scale; large values crop at the images' own (--max_side) scale.")
flags.DEFINE_float("style_hue", 0.0, "Rotate each style crop's hue by U(-1, 1) * style_hue * 180 degrees "
                   "(0: off); more palettes for a decoder trained on few paintings (1500 steps of it from the shipped "
                   "decoder lowered the held-out scores: README, AdaIN).")
flags.DEFINE_integer("batch", 4, "Global batch (a multiple of the device count).")
flags.DEFINE_integer("steps", 100_000, "Total steps (training stops earlier at --max_minutes).")
flags.DEFINE_float("lr", 1e-4, "Adam learning rate (paper: 1e-4).")
flags.DEFINE_float("lr_decay", 5e-5, "Inverse-time decay per step: lr / (1 + decay * step) (paper: 5e-5).")
flags.DEFINE_float("style_weight", 10.0, "Style loss weight.")
flags.DEFINE_float("content_weight", 1.0, "Content loss weight (reconstruct: of the relu4_1 MSE).")
flags.DEFINE_integer("width", 64, "Decoder width (64 = the paper's decoder).")
flags.DEFINE_integer("max_side", 512, "Training images are decoded capped at this long side.")
flags.DEFINE_float("cache_gb", 8.0, "Decoded images are kept up to this size (GiB, contents and styles together); "
                   "beyond it they are decoded again when drawn, so folders of any size fit in memory.")
flags.DEFINE_integer("input_threads", 2, "Host threads that decode and crop the batches (more on a GPU machine, "
                     "where a step takes milliseconds).")
flags.DEFINE_integer("seed", 0, "Seed of initialisation and batches.")
flags.DEFINE_float("max_minutes", None, "Stop (after a checkpoint) after this much wall time.")
flags.DEFINE_integer("checkpoint_every", 100, "Checkpoint every N steps.")
flags.DEFINE_string("weights", "hed-vgg16", "Encoder weights.")
flags.DEFINE_string("out_dir", "outputs/adain_train", "Checkpoint, metrics.json and loss_curve.png go here.")
flags.DEFINE_bool("resume", True, "Continue from out_dir/checkpoint.npz when present.")
flags.DEFINE_string("export", None, "Also write the trained decoder (fp16) here.")
flags.DEFINE_bool("export_only", False, "Only export out_dir/checkpoint.npz as it is to --export (same flags as the "
                  "run), without training.")
flags.DEFINE_string("init_decoder", None, "Fine-tune: start from this trained decoder (.npz or name) with fresh "
                    "Adam moments and lr schedule, unless out_dir already holds a checkpoint to resume.")
FLAGS = flags.FLAGS


def folders(flag: str) -> list[str]:
  """The folders of a list flag: the defaults (../shared/data) may be absent, folders given on the command line
  must exist (list_images says which does not)."""
  if FLAGS[flag].present:
    return FLAGS[flag].value
  return [d for d in FLAGS[flag].value if pathlib.Path(d).exists()]


def sources() -> tuple[list, list]:
  contents = training_images.list_images(folders("content_dirs"), exclude=FLAGS.holdout)
  styles = training_images.list_images(folders("style_dirs"), exclude=FLAGS.holdout)
  if FLAGS.highres and (DATA / "highres").is_dir():
    contents += [p for p in sorted((DATA / "highres").glob("*_input.jpg")) if p.stem not in FLAGS.holdout]
  if FLAGS.demo_images:
    contents += [demo.default_content_path()] + [demo.mosaic_painting(384, seed) for seed in (2, 3)]
    styles += [demo.swirl_painting(384, seed) for seed in range(4)] + [demo.mosaic_painting(384, seed, cell=c)
                                                                       for seed, c in ((0, 12.0), (1, 24.0))]
  return contents, styles


def run() -> None:
  if FLAGS.cache_gb < 0 or FLAGS.input_threads < 1:
    raise NSTError(f"--cache_gb must be >= 0 and --input_threads >= 1, got {FLAGS.cache_gb}, {FLAGS.input_threads}")
  weights = resolve_weights(FLAGS.weights)
  config = adain_train.TrainConfig(
      crop=FLAGS.crop, batch=FLAGS.batch, steps=FLAGS.steps, lr=FLAGS.lr, lr_decay=FLAGS.lr_decay,
      style_weight=FLAGS.style_weight, content_weight=FLAGS.content_weight, width=FLAGS.width, seed=FLAGS.seed,
      min_scale=FLAGS.min_scale, max_scale=FLAGS.max_scale, style_hue=FLAGS.style_hue, stage=FLAGS.stage,
      encoder_width=FLAGS.encoder_width, pixel_weight=FLAGS.pixel_weight, style_norm=FLAGS.style_norm,
      schedule=FLAGS.schedule, ema=FLAGS.ema, gray_styles=FLAGS.gray_styles, decoder_padding=FLAGS.decoder_padding,
      loss_net=FLAGS.loss_net, skips=FLAGS.skips, input_scale=FLAGS.input_scale, color_weight=FLAGS.color_weight)
  init = None
  if FLAGS.init_decoder:
    init = adain_decoders.resolve_decoder(FLAGS.init_decoder)
    adain_decoders.check_encoder(init, weights)
  content_src, style_src = sources()
  pool = dict(max_side=FLAGS.max_side, cache_bytes=int(FLAGS.cache_gb * 2**30 / 2),  # half each
              threads=FLAGS.input_threads)
  contents = training_images.ImagePool(content_src, **pool)
  styles = training_images.ImagePool(style_src, **pool)
  print(f"{len(contents)} content and {len(styles)} style images; holdout {','.join(FLAGS.holdout)}")
  student = student_for(config, weights, init, contents, styles)
  trainer = adain_train.make_trainer(config, weights, student=student)
  start = time.perf_counter()
  max_seconds = FLAGS.max_minutes * 60 if FLAGS.max_minutes else None
  evaluate = curve_evaluator(trainer) if FLAGS.eval_every and config.stage != "distill" else None
  init_params = None
  if init is not None:
    init_params = init.params
  if FLAGS.export_only:  # the checkpoint as it is (e.g. of a run still going on), no training
    state, history = adain_train.load_checkpoint(pathlib.Path(FLAGS.out_dir) / "checkpoint.npz", trainer)
  else:
    state, history = adain_train.train(trainer, contents, styles, out_dir=FLAGS.out_dir, resume=FLAGS.resume,
                                       checkpoint_every=FLAGS.checkpoint_every, max_seconds=max_seconds,
                                       init_params=init_params, input_threads=FLAGS.input_threads,
                                       evaluate=evaluate, eval_every=FLAGS.eval_every)
  if FLAGS.export:
    info = {**dataclasses.asdict(config), "steps": state["step"], "init_decoder": FLAGS.init_decoder,
            "init_decoder_info": init.info if init else None, "student": FLAGS.student,
            "final_loss": next((h for h in reversed(history) if "loss" in h), None),
            "content_images": len(contents), "style_images": len(styles), "holdout": list(FLAGS.holdout),
            "wall_s_this_run": time.perf_counter() - start, "command": " ".join(sys.argv)}
    params = trainer.export_params(state)
    if config.stage == "distill":
      adain_student.save_student(FLAGS.export, dataclasses.replace(student, params=params, info=info))
    else:
      adain_decoder.save_decoder(FLAGS.export, adain_decoder.DecoderCheckpoint(
          params=params, arch=weights.arch, width=config.width, encoder_sha256=weights.source_sha256,
          encoder_source=weights.source, info=info, padding=config.decoder_padding,
          skip_width=adain_train.skip_width(config), input_scale=config.input_scale,
          student=None if student is None else dataclasses.replace(student, params=jax.device_get(student.params))))
    print(f"wrote {FLAGS.export}")


def student_for(config, weights, init, contents, styles) -> adain_student.Student | None:
  """The student encoder of this run: from --student, from --init_decoder's file, or (distill) the pruned
  teacher; None when the teacher feeds the decoder."""
  if config.encoder_width == 0:
    return None
  pruned = pathlib.Path(FLAGS.out_dir) / "student_init.npz"  # distill's start, kept for resuming
  if FLAGS.student:
    try:
      student = adain_student.load_student(FLAGS.student)
    except NSTError:
      student = adain_decoders.resolve_decoder(FLAGS.student).student
    if student is None:
      raise NSTError(f"--student {FLAGS.student!r} holds no student encoder")
  elif init is not None and init.student is not None:
    student = init.student
  elif config.stage == "distill" and pruned.is_file():
    student = adain_student.load_student(pruned)
  elif config.stage == "distill":
    rng = np.random.default_rng(config.seed)
    sample = [training_images.random_crop(pool[int(rng.integers(len(pool)))], rng, crop=128, min_scale=1.0,
                                      max_scale=3.0) for pool in (contents, styles) for _ in range(16)]
    params, channels = adain_student.prune_teacher(weights.params, np.stack(sample), width=config.encoder_width,
                                                   preprocessing=weights.preprocessing)
    student = adain_student.Student(params, config.encoder_width, channels, weights.arch, weights.source_sha256,
                                    {"init": "pruned teacher (32 sample crops)"}, weights.preprocessing)
    pruned.parent.mkdir(parents=True, exist_ok=True)
    adain_student.save_student(pruned, student)
  else:
    raise NSTError("--encoder_width > 0 needs --student (or an --init_decoder that holds a student encoder)")
  if student.teacher_sha256 != weights.source_sha256:
    raise NSTError("--student was distilled from other --weights")
  return student


def curve_evaluator(trainer):
  """evaluate(params) -> the learning-curve summary on adain_eval.CURVE_* at --eval_size (None without data)."""
  if not (DATA / "train" / "photos").is_dir():
    return None
  contents, styles = adain_eval.load_holdout(DATA, photos=adain_eval.CURVE_PHOTOS,
                                             paintings=adain_eval.CURVE_PAINTINGS, extra=())
  teacher = adain_eval.Teacher.from_weights(trainer.weights)

  def evaluate(params):
    ckpt = adain_decoder.DecoderCheckpoint(params=params, arch=trainer.weights.arch, width=trainer.config.width,
                                   encoder_sha256=trainer.weights.source_sha256,
                                   encoder_source=trainer.weights.source, student=trainer.student,
                                   padding=trainer.config.decoder_padding,
                                   skip_width=adain_train.skip_width(trainer.config),
                                   input_scale=trainer.config.input_scale)
    model = adain.make_model(trainer.weights, ckpt)
    stylize = lambda c, s, alpha: adain.stylize(c, [s], model=model, alpha=alpha)  # noqa: E731
    return adain_eval.evaluate(stylize, teacher, contents, styles, size=FLAGS.eval_size)["summary"]

  return evaluate


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  with exit_on_error():  # bad input: one line, no traceback
    run()


if __name__ == "__main__":
  app.run(main)
