"""Held-out learning curves of AdaIN training runs: reduction, SSIM and PSNR against steps, images seen
and process CPU seconds, with a log-linear extrapolation of the reduction to the acceptance bar.

Run (from the repository root, after runs of `python -m nst_jax train adain` with --eval_every):
  python -m experiments.studies.adain_curve --runs outputs/A1,outputs/A2,outputs/A3 --out outputs/adain_curve

Reads each run's metrics.json (the 'eval' entries: adain_eval.CURVE_* pairs at 256 px); writes OUT.png (three
panels per x axis) and OUT.json, and prints per run the last point and, from a least-squares fit of the reduction's
geometric mean against log(images seen) over the second half of the curve, the images (and CPU hours at the run's
rate) at which it would reach --target (4x): a rough extrapolation, stated as such.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
from absl import app, flags

from nst_jax.io import atomic

flags.DEFINE_list("runs", [], "Run folders (each with metrics.json).")
flags.DEFINE_string("out", "outputs/adain_curve", "Writes OUT.png and OUT.json.")
flags.DEFINE_float("target", 4.0, "Reduction (geometric mean) to extrapolate to.")
FLAGS = flags.FLAGS


def curve(run: pathlib.Path) -> list[dict]:
  history = json.loads((run / "metrics.json").read_text())["history"]
  return [h for h in history if "eval" in h]


def extrapolate(points: list[dict], target: float) -> dict:
  """Images seen at which the fitted reduction = a + b log(images) reaches `target` (fit on the second half)."""
  half = points[len(points) // 2:]
  if len(half) < 2:
    return {}
  x = np.log([p["images"] for p in half])
  y = np.array([p["eval"]["reduction_geomean"] for p in half])
  b, a = np.polyfit(x, y, 1)
  cpu_per_image = half[-1]["cpu_s"] / half[-1]["images"]
  if b <= 0:
    return {"slope_per_log_image": float(b), "images": None}
  images = float(np.exp((target - a) / b))
  return {"slope_per_log_image": float(b), "images": images, "cpu_hours": images * cpu_per_image / 3600}


def main(argv):
  del argv
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  record = {}
  fig, axes = plt.subplots(3, 3, figsize=(13, 10), dpi=90)
  keys = (("reduction_geomean", "reduction (geomean)"), ("ssim_mean", "SSIM to content"), ("psnr_mean", "PSNR a=0"))
  xs = (("step", "steps"), ("images", "images seen"), ("cpu_s", "process CPU s"))
  for run in FLAGS.runs:
    run = pathlib.Path(run)
    points = curve(run)
    if not points:
      continue
    record[run.name] = {"points": points, "extrapolation": extrapolate(points, FLAGS.target)}
    for row, (key, label) in enumerate(keys):
      for col, (xkey, xlabel) in enumerate(xs):
        ax = axes[row][col]
        ax.plot([p[xkey] for p in points], [p["eval"][key] for p in points], marker="o", label=run.name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    last = points[-1]
    print(f"{run.name}: step {last['step']} ({last['images']} images, {last['cpu_s'] / 3600:.2f} CPU h): "
          f"reduction {last['eval']['reduction_geomean']:.2f}x (min {last['eval']['reduction_min']:.2f}x), SSIM "
          f"{last['eval']['ssim_mean']:.3f}, PSNR {last['eval']['psnr_mean']:.1f} dB; extrapolation to "
          f"{FLAGS.target}x: {record[run.name]['extrapolation']}")
  for ax in axes[0]:
    ax.axhline(FLAGS.target, color="gray", linestyle="--")
  axes[0][0].legend()
  fig.tight_layout()
  out = pathlib.Path(FLAGS.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  with atomic.atomic_write(out.with_suffix(".png")) as f:
    fig.savefig(f, format="png")
  atomic.write_json(out.with_suffix(".json"), record)
  print(f"wrote {out}.png, {out}.json")


if __name__ == "__main__":
  app.run(main)
