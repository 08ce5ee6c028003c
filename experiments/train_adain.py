"""Trains an AdaIN decoder (Huang & Belongie 2017) for the hed-vgg16 encoder and exports it.

The shipped decoder `weights/adain-decoder-hed-vgg16.npz` was made on the 2-core shared CPU (no GPU), run from the
repository root (`-m` so that this checkout's nst_jax is imported), in two phases:

1. From scratch, 3760 steps in 130 minutes (this command with --max_minutes 20, then again with --max_minutes 110;
   the second run resumed at step 650); crops from the image scaled to a short side of 1-2x the crop:

  nice -n 10 python -m experiments.train_adain --crop 96 --batch 4 --steps 100000 --lr 1e-4 --style_weight 2 \
      --max_minutes 110 --out_dir outputs/adain_train_v3 --export weights/adain-decoder-hed-vgg16.npz

2. Fine-tuned 2000 steps (35 min) on crops at the images' own <=512-px scale (short side 2-6x the crop, capped at
   the decoded size), where the first phase's decoder lost most style at 512-px inference; the phase-1 decoder is
   `git show 32c8329:weights/adain-decoder-hed-vgg16.npz > phase1.npz`:

  nice -n 10 python -m experiments.train_adain --crop 96 --batch 4 --steps 2000 --lr 1e-4 --style_weight 2 \
      --min_scale 2 --max_scale 6 --init_decoder phase1.npz --out_dir outputs/adain_train_ft \
      --export weights/adain-decoder-hed-vgg16.npz

Rerunning the same command resumes from out_dir/checkpoint.npz. Keep the paper's lr 1e-4: with 5e-4 most decoder
ReLUs died in the first steps (79% of dec4_1's channels never fired after 1110 steps; reconstruction PSNR ~10 dB).

Content images: ../shared/data/photoreal/input, ../shared/data/highres/*_input.jpg, ../shared/data/artistic/content,
matplotlib's Grace Hopper photo and two generated mosaics; styles: ../shared/data/artistic/style,
../shared/data/photoreal/style and the generated swirl/mosaic paintings of `nst_jax.demo`. The files in --holdout are
never read (they are the evaluation set of experiments/adain_figures.py). Expected result: the running loss falls
by over an order of magnitude (see README, "AdaIN", for the measured curve); out_dir holds checkpoint.npz
(resumable: rerun the same command), metrics.json and loss_curve.png. Without ../shared/data it trains on the demo
images only.
"""

from __future__ import annotations

import pathlib
import time

from absl import app, flags

from nst_jax import demo
from nst_jax.methods import adain_train
from nst_jax.models import adain_decoder
from nst_jax.errors import NSTError, exit_on_error
from nst_jax.weights.store import resolve_weights

DATA = pathlib.Path(__file__).resolve().parent.parent / ".." / "shared" / "data"
HOLDOUT = ("in5", "in12", "in21", "in28", "golden_gate", "tar5", "tar21", "starry_night", "shipwreck")

flags.DEFINE_list("content_dirs", [str(DATA / "photoreal/input"), str(DATA / "artistic/content")],
                  "Folders (or files) of content photos.")
flags.DEFINE_list("style_dirs", [str(DATA / "artistic/style"), str(DATA / "photoreal/style")],
                  "Folders (or files) of style images.")
flags.DEFINE_bool("highres", True, "Also use ../shared/data/highres/*_input.jpg as content.")
flags.DEFINE_bool("demo_images", True, "Add matplotlib's sample photo and generated mosaics (content) and paintings "
                  "(style).")
flags.DEFINE_list("holdout", list(HOLDOUT), "File names (with or without suffix) never used for training.")
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
flags.DEFINE_float("style_weight", 10.0, "Style loss weight (content weight 1).")
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
  contents = adain_train.list_images(folders("content_dirs"), exclude=FLAGS.holdout)
  styles = adain_train.list_images(folders("style_dirs"), exclude=FLAGS.holdout)
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
  config = adain_train.TrainConfig(crop=FLAGS.crop, batch=FLAGS.batch, steps=FLAGS.steps, lr=FLAGS.lr,
                                   lr_decay=FLAGS.lr_decay, style_weight=FLAGS.style_weight, width=FLAGS.width,
                                   seed=FLAGS.seed, min_scale=FLAGS.min_scale, max_scale=FLAGS.max_scale,
                                   style_hue=FLAGS.style_hue)
  init = None
  if FLAGS.init_decoder:
    init = adain_decoder.resolve_decoder(FLAGS.init_decoder)
    adain_decoder.check_encoder(init, weights)
  content_src, style_src = sources()
  pool = dict(max_side=FLAGS.max_side, cache_bytes=int(FLAGS.cache_gb * 2**30 / 2),  # half each
              threads=FLAGS.input_threads)
  contents = adain_train.ImagePool(content_src, **pool)
  styles = adain_train.ImagePool(style_src, **pool)
  print(f"{len(contents)} content and {len(styles)} style images; holdout {','.join(FLAGS.holdout)}")
  trainer = adain_train.make_trainer(config, weights)
  start = time.perf_counter()
  max_seconds = FLAGS.max_minutes * 60 if FLAGS.max_minutes else None
  state, history = adain_train.train(trainer, contents, styles, out_dir=FLAGS.out_dir, resume=FLAGS.resume,
                                     checkpoint_every=FLAGS.checkpoint_every, max_seconds=max_seconds,
                                     init_params=init.params if init else None, input_threads=FLAGS.input_threads)
  if FLAGS.export:
    info = {"steps": state["step"], "crop": config.crop, "batch": config.batch, "lr": config.lr,
            "lr_decay": config.lr_decay, "style_weight": config.style_weight, "min_scale": config.min_scale,
            "max_scale": config.max_scale, "style_hue": config.style_hue, "init_decoder": FLAGS.init_decoder,
            "init_decoder_info": init.info if init else None, "final_loss": history[-1] if history
            else None, "content_images": len(contents), "style_images": len(styles),
            "holdout": list(FLAGS.holdout), "wall_s_this_run": time.perf_counter() - start}
    adain_decoder.save_decoder(FLAGS.export, adain_decoder.DecoderCheckpoint(
        params=state["params"], arch=weights.arch, width=config.width, encoder_sha256=weights.source_sha256,
        encoder_source=weights.source, info=info))
    print(f"wrote {FLAGS.export}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  with exit_on_error():  # bad input: one line, no traceback
    run()


if __name__ == "__main__":
  app.run(main)
