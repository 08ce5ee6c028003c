"""Where one stage-2 iteration of photorealistic transfer spends its time: VGG (content + style) vs the matting term
vs the rest, each as a jitted value-and-gradient of the image, and one whole L-BFGS step.

Run (from the repository root):
  python -m experiments.studies.photoreal_profile                 # pair 1 of ../shared/data/photoreal at 512 px
  python -m experiments.studies.photoreal_profile --size 256 --repeats 3

Without ../shared/data the demo content (matplotlib's photo) and a generated painting are used, with no maps.
Prints a table and writes outputs/photoreal_profile/results.json. Expected: see docs/photoreal.md
("Speed"); the matting term's share is what the study checks against its 15% budget.
"""

from __future__ import annotations

import dataclasses
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from nst_jax import demo
from nst_jax.errors import exit_on_error
from nst_jax.io import image_io
from nst_jax.methods import gatys, photoreal
from nst_jax.engines.optimize import optimize_image
from nst_jax.objective.config import run_settings
from nst_jax.weights.store import resolve_weights

from experiments import common
from experiments.papers import dpst_examples

flags.DEFINE_integer("size", 512, "Long side in pixels.")
flags.DEFINE_integer("pair", 1, "Pair of the paper's examples.")
flags.DEFINE_integer("repeats", 5, "Timed calls per part (after one warm-up call).")
flags.DEFINE_string("data_dir", common.DEFAULT_DATA_DIR, "Folder holding photoreal/.")
flags.DEFINE_string("out_dir", "outputs/photoreal_profile", "Folder for results.json.")
FLAGS = flags.FLAGS


def timed(fn, *args, repeats: int) -> float:
  """Median wall seconds of `fn(*args)` (blocked on its outputs) over `repeats` calls after a warm-up call."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def profile(*, content, style, content_seg, style_seg, size: int, repeats: int) -> dict:
  weights = resolve_weights("hed-vgg16")
  config = photoreal.PhotorealConfig(size=size, stage1_iterations=1, stage2_iterations=1)
  shape = image_io.long_side_shape(content.shape, size)
  cfg = photoreal.stylize_config(config, stage=2, shape=shape, input_scale=weights.preprocessing.input_scale)
  problem = gatys.build_problem(content=content, styles=[style], weights=weights, config=cfg,
                                content_seg=content_seg, style_seg=style_seg)
  x = jnp.asarray(photoreal.colors_init(content=content, style=style, shape=shape, content_seg=content_seg,
                                        style_seg=style_seg))

  def part(keys):
    return jax.jit(jax.value_and_grad(lambda img, inputs: sum(v for k, v in problem.terms_fn(img, inputs).items()
                                                             if k in keys)))

  names = set(jax.eval_shape(problem.terms_fn, x, problem.inputs))
  parts = {"total": names, "vgg (content + style)": {"content", "style"}, "matting": {"matting"},
           "rest (tv, range)": names - {"content", "style", "matting"}}
  seconds = {name: timed(part(keys), x, problem.inputs, repeats=repeats) for name, keys in parts.items()}
  step_run = run_settings(dataclasses.replace(cfg, iterations=repeats, log_every=1, stall_rtol=None))
  optimize_image(problem.terms_fn, problem.inputs, x, run=step_run, progress=False)  # compiles
  start = time.perf_counter()
  optimize_image(problem.terms_fn, problem.inputs, x, run=step_run, progress=False)
  seconds["one L-BFGS step (incl. line search)"] = (time.perf_counter() - start) / repeats
  return {"shape": list(shape), "seconds": seconds,
          "share_of_total": {k: v / seconds["total"] for k, v in seconds.items()}}


def main(argv):
  del argv
  with exit_on_error():
    root = dpst_examples.find_photoreal(FLAGS.data_dir)
    if root is None:
      print("[data] no photoreal/ folder: the demo photo and a generated painting, without maps")
      images = dict(content=demo.default_content(), style=demo.swirl_painting(512), content_seg=None, style_seg=None)
    else:
      files = dpst_examples.pair_files(root, FLAGS.pair)
      images = {k: image_io.load_image(files[k], what=k) for k in ("content", "style", "content_seg", "style_seg")}
    record = profile(**images, size=FLAGS.size, repeats=FLAGS.repeats)
    record["load_average"] = list(__import__("os").getloadavg())
    h, w = record["shape"]
    print(f"stage-2 evaluation at {w}x{h} (median of {FLAGS.repeats}):")
    for name, s in record["seconds"].items():
      print(f"  {name:<38} {1000 * s:9.1f} ms  {100 * record['share_of_total'][name]:5.1f}%")
    common.write_json(pathlib.Path(FLAGS.out_dir) / "results.json", record)


if __name__ == "__main__":
  app.run(main)
