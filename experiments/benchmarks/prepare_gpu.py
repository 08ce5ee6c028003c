"""Prepares the ignored folder that a GPU machine without network (and without ../shared) trains the AdaIN decoder
from: outputs/gpu/ (carried to the machine with the working tree; 64 MiB in all).

Run (from the repository root, once, on the CPU machine):
  python -m experiments.benchmarks.prepare_gpu
  python -m experiments.benchmarks.prepare_gpu --student outputs/student16_lsq.npz \
      --init_decoder weights/adain-fast-16.npz

Writes:
  - outputs/gpu/weights/hed-vgg16.npz: the encoder weights in float16, the convolutions after conv4_1 zeroed (AdaIN
    stops at relu4_1, and zeros compress to nothing), side outputs dropped: ~5 MB instead of 59 MB. Its metadata keeps the original
    file's sha256, so decoders trained with it pair with hed-vgg16 (the fp16 rounding changes relu4_1 features by
    ~1e-3 relative, far below the training noise);
  - outputs/gpu/train/photos, outputs/gpu/train/paintings: ../shared/data/train without the held-out split of
    nst_jax/methods/adain/evaluation.py, short side 256 px (a 256-px crop always fits), JPEG quality 90: ~20 MB;
  - outputs/gpu/student.npz, outputs/gpu/init.npz: copies of --student and --init_decoder (if given).
Expected: "wrote outputs/gpu: N photos, M paintings, X MB in all"; the GPU command is in README ("AdaIN", "On a
GPU"). Never commit outputs/: the images are third-party.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
from absl import app, flags
from PIL import Image

from nst_jax.errors import NSTError, exit_on_error
from nst_jax.io import atomic, image_io
from nst_jax.methods.adain import evaluation as adain_eval
from nst_jax.weights.store import resolve_weights

DATA = pathlib.Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
USED = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1")

flags.DEFINE_string("out_dir", "outputs/gpu", "Folder to write (git-ignored).")
flags.DEFINE_integer("short_side", 256, "Short side of the training copies (px).")
flags.DEFINE_string("student", None, "Student encoder .npz to copy along.")
flags.DEFINE_string("init_decoder", None, "Decoder .npz to copy along (the run's starting point).")
flags.DEFINE_string("weights", "hed-vgg16", "Encoder weights to shrink.")
FLAGS = flags.FLAGS


def shrink_weights(name: str, dest: pathlib.Path) -> None:
  """float16 VGG convolutions, those after conv4_1 zeroed, no extras; metadata (source sha256) kept."""
  weights = resolve_weights(name)
  arrays = {}
  for conv, p in weights.params.items():
    for key in ("kernel", "bias"):
      value = np.asarray(p[key], np.float16)
      arrays[f"{conv}/{key}"] = value if conv in USED else np.zeros_like(value)
  meta = {"format_version": 1, "arch": weights.arch, "preprocessing": weights.preprocessing.to_dict(),
          "source": f"{weights.source} (float16, convolutions after conv4_1 zeroed: AdaIN training only)",
          "source_sha256": weights.source_sha256, "extras": []}
  dest.parent.mkdir(parents=True, exist_ok=True)
  with atomic.atomic_write(dest) as f:
    np.savez_compressed(f, __meta__=np.array(json.dumps(meta)), **arrays)
  resolve_weights(str(dest))  # reads back under the strict loader


def copy_images(src: pathlib.Path, dest: pathlib.Path, *, short_side: int, exclude: set[str]) -> int:
  dest.mkdir(parents=True, exist_ok=True)
  count = 0
  for path in sorted(src.glob("*.jpg")):
    if path.stem in exclude:
      continue
    image = image_io.load_image(path)
    h, w = image.shape[:2]
    scale = short_side / min(h, w)
    if scale < 1:
      image = image_io.resize(image, max(short_side, round(h * scale)), max(short_side, round(w * scale)))
    with atomic.atomic_write(dest / path.name) as f:
      Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)).save(f, format="JPEG", quality=90)
    count += 1
  return count


def run() -> None:
  out = pathlib.Path(FLAGS.out_dir)
  if not (DATA / "train").is_dir():
    raise NSTError(f"{DATA / 'train'} is absent: nothing to prepare")
  shrink_weights(FLAGS.weights, out / "weights" / "hed-vgg16.npz")
  exclude = set(adain_eval.holdout_names())
  counts = [copy_images(DATA / "train" / kind, out / "train" / kind, short_side=FLAGS.short_side, exclude=exclude)
            for kind in ("photos", "paintings")]
  for source, name in ((FLAGS.student, "student.npz"), (FLAGS.init_decoder, "init.npz")):
    if source:
      shutil.copyfile(source, out / name)
  total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
  print(f"wrote {out}: {counts[0]} photos, {counts[1]} paintings, {total / 2**20:.1f} MB in all")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  with exit_on_error():
    run()


if __name__ == "__main__":
  app.run(main)
