"""The video command's methods compared on a real clip: how stable each is in time, how much style it keeps and
how long a frame takes, for docs/video.md.

Run (from the repository root; needs the shared clip, skips without it):
  nice -n 10 python -m experiments.studies.video_consistency --rows wct,adain --max_frames 8
  nice -n 10 python -m experiments.studies.video_consistency --rows gatys --gatys_size 256 --gatys_frames 4
  nice -n 10 python -m experiments.studies.video_consistency --rows gatys --gatys_size 512 --temporal_weights 3e4,3e5

Rows: the content clip itself (the floor), Gatys per frame (each frame from its own start, --iterations_first
iterations), Gatys with the temporal loss and warm starts (--iterations_first, then --iterations a frame), WCT and
AdaIN per frame and with clip-wide content statistics (--statistics_window), each alone and with the consistency
pass (--consistency_lambda). Fast rows run at --size (long side) on
--max_frames frames; the Gatys rows at --gatys_size on --gatys_frames frames (a CPU cannot run 500 L-BFGS
iterations at 512 px a frame in reasonable time). Columns: Lai et al.'s warping error under the content clip's DIS
flow and reliability masks at the row's size (its ratio to the content clip's own and to the method's per-frame
row), the Gram style loss (the default network and style layers, style weight 10) averaged over frames (and its
ratio to the per-frame row), and seconds per frame after the first (flow and pass included for the fast paths; the
first frame compiles; clip-wide rows after a two-frame warm-up clip).

Expected (2-core CPU; docs/video.md): at 512x218 on 8 frames the pass (lam 30, cubic warping) cuts AdaIN's warping
error from 13x to 1.8x the content clip's at 1.18x the per-frame style loss, 0.6 s a frame, and WCT's from 25x to
2.3x at 1.16x, 1.3 s a frame; at 512x218 on 4 frames the temporal loss at 3e5 gives Gatys 2.3x the content clip's
error (per frame: 250x) at 0.82x the per-frame style loss, ~50 s a frame after the first on an idle CPU (~45 min
for the Gatys rows with three weights).
Writes outputs/video_consistency/: results.json, table.md, sheet.png and one GIF per row (nothing is committed).
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import numpy as np
from absl import app, flags
from PIL import Image

from experiments import common
from nst_jax import figures
from nst_jax.cli import wct as wct_cli
from nst_jax.engines.optimize import jitted_terms
from nst_jax.io import atomic, image_io, video as video_io
from nst_jax.methods import video
from nst_jax.methods.adain import stylize as adain
from nst_jax.methods.gatys import build_problem
from nst_jax.methods.wct import stylize as wct
from nst_jax.models import adain_decoder
from nst_jax.objective.config import StylizeConfig
from nst_jax.video import consistency, flow, measures, reliability, warp
from nst_jax.weights import adain_decoders
from nst_jax.weights.store import resolve_weights

flags.DEFINE_string("clip", "../shared/data/video/sintel_ambush_4", "Folder of the clip's frames.")
flags.DEFINE_string("style", "../shared/data/artistic/style/starry_night.jpg", "Style image.")
flags.DEFINE_integer("size", 512, "Long side of the fast rows' frames.")
flags.DEFINE_integer("max_frames", 8, "Frames of the fast rows.")
flags.DEFINE_integer("gatys_size", 256, "Long side of the Gatys rows' frames.")
flags.DEFINE_integer("gatys_frames", 4, "Frames of the Gatys rows.")
flags.DEFINE_integer("iterations_first", 150, "Gatys: iterations of every per-frame frame and of the first frame.")
flags.DEFINE_integer("iterations", video.DEFAULT_ITERATIONS,
                     "Gatys + temporal: iterations of the frames after the first.")
flags.DEFINE_list("temporal_weights", [f"{video.DEFAULT_TEMPORAL_WEIGHT:g}"],
                  "Gatys + temporal: the temporal loss's weights, one row each.")
flags.DEFINE_integer("statistics_window", 0, "Clip-stats rows: frames whose statistics whiten each (0: all).")
flags.DEFINE_float("consistency_lambda", consistency.STYLIZED_LAMBDA, "The consistency pass's lambda.")
flags.DEFINE_list("rows", ["gatys", "wct", "adain"], "Which methods to run (the content row always runs).")
flags.DEFINE_string("out_dir", "outputs/video_consistency", "Where the outputs go.")
FLAGS = flags.FLAGS


@dataclasses.dataclass
class Clip:
  """A clip at one size with its content flows, masks, and the style loss of its frames."""

  frames: np.ndarray
  backward: np.ndarray
  masks: np.ndarray
  flow_seconds: float
  style_loss: object

  def warping_error(self, frames: np.ndarray) -> float:
    return measures.warping_error(frames, self.backward, self.masks)


def load_clip(size: int, count: int, weights, style: np.ndarray) -> Clip:
  frames = video_io.read_frames(FLAGS.clip, max_frames=count, size=size, what="--clip").frames
  start = time.perf_counter()
  forward, backward = flow.clip_flows(frames)
  seconds = (time.perf_counter() - start) / max(len(frames) - 1, 1)
  masks = np.asarray(reliability.clip_reliability(forward, backward))
  problem = build_problem(content=frames[0], styles=[style], weights=weights,
                          config=StylizeConfig(size=max(frames.shape[1:3])))
  terms = jitted_terms(problem.terms_fn)
  style_loss = lambda clip: float(np.mean([float(terms(f, problem.inputs)["style"]) for f in clip]))  # noqa: E731
  return Clip(frames, backward, masks, seconds, style_loss)


def fast_rows(name: str, stylize_frame, stylize_clip, clip: Clip) -> list[tuple[str, np.ndarray, float]]:
  """(label, frames, seconds per frame) per frame, with clip-wide statistics, and each with the pass; flow time
  included. Per frame: the mean after the first (which compiles); clip-wide: a warm-up clip of two frames first."""
  per_frame, seconds = video.stylize_frames(clip.frames, stylize_frame)
  frame_seconds = float(np.mean(seconds[1:])) if len(seconds) > 1 else seconds[0]
  stylize_clip(clip.frames[:2])  # compiles every level's programs
  together, clip_seconds = video.stylize_together(clip.frames, stylize_clip)
  rows = []
  for label, frames, seconds_each in ((f"{name} per frame", per_frame, frame_seconds),
                                      (f"{name} clip stats", together, clip_seconds[0])):
    start = time.perf_counter()
    stable = video.stabilize(clip.frames, frames, lam=FLAGS.consistency_lambda)  # flows again: their time counts
    pass_seconds = (time.perf_counter() - start) / max(len(clip.frames) - 1, 1)
    rows += [(label, frames, seconds_each), (f"{label} + consistency", stable, seconds_each + pass_seconds)]
  return rows


def gatys_rows(clip: Clip, weights, style) -> list[tuple[str, np.ndarray, float]]:
  config = StylizeConfig(iterations=FLAGS.iterations_first, log_every=10)
  per_frame, seconds = video.stylize_clip(clip.frames, styles=[style], weights=weights, config=config,
                                          settings=video.ClipSettings(warm_start=False), progress=False)
  rows = [("Gatys per frame", per_frame, float(np.mean(seconds[1:])))]
  for weight in (float(w) for w in FLAGS.temporal_weights):
    config = dataclasses.replace(config, iterations=FLAGS.iterations, temporal_weight=weight)
    stable, seconds = video.stylize_clip(clip.frames, styles=[style], weights=weights, config=config,
                                         settings=video.ClipSettings(iterations_first=FLAGS.iterations_first),
                                         progress=False)
    label = "Gatys + temporal" if len(FLAGS.temporal_weights) == 1 else f"Gatys + temporal {weight:g}"
    rows.append((label, stable, float(np.mean(seconds[1:])) + clip.flow_seconds))
  return rows


def difference_map(frames: np.ndarray, clip: Clip) -> np.ndarray:
  """|last frame - the one before warped into it| x 4 where reliable: what flicker looks like."""
  moved = np.asarray(warp.warp(frames[-2], clip.backward[-1]))
  return np.clip(4 * np.abs(frames[-1] - moved) * clip.masks[-1][..., None], 0, 1)


def write_gif(path: pathlib.Path, frames: np.ndarray) -> None:
  images = [Image.fromarray(np.round(np.clip(f, 0, 1) * 255).astype(np.uint8)) for f in frames]
  with atomic.atomic_write(path) as f:
    images[0].save(f, format="GIF", save_all=True, append_images=images[1:], duration=120, loop=0)


def main(argv) -> None:
  del argv
  if not pathlib.Path(FLAGS.clip).is_dir():
    print(f"skipped: no clip at {FLAGS.clip}")
    return
  out = pathlib.Path(FLAGS.out_dir)
  weights = resolve_weights("hed-vgg16")
  style = image_io.load_image(FLAGS.style, what="style")
  rows: list[tuple[str, np.ndarray, float, Clip]] = []
  fast = load_clip(FLAGS.size, FLAGS.max_frames, weights, image_io.resize_long_side(style, FLAGS.size))
  rows.append(("content", fast.frames, fast.flow_seconds, fast))
  if "wct" in FLAGS.rows:
    model = wct.make_model(weights, wct_cli.resolve_decoders(wct_cli.DEFAULT_DECODERS))
    transforms = [wct.style_transforms(model, image_io.resize_long_side(style, FLAGS.size))]
    rows += [(*r, fast) for r in fast_rows(
        "WCT", lambda f: wct.stylize(f, [], model=model, transforms=transforms),
        lambda c: wct.stylize_clip(c, model=model, transforms=transforms, window=FLAGS.statistics_window), fast)]
  if "adain" in FLAGS.rows:
    ckpt = adain_decoders.resolve_decoder(adain_decoder.DEFAULT_DECODER)
    model = adain.make_model(weights if ckpt.student is None else None, ckpt)
    stats = [adain.style_statistics(model, image_io.resize_long_side(style, FLAGS.size))]
    rows += [(*r, fast) for r in fast_rows(
        "AdaIN", lambda f: adain.stylize(f, [], model=model, style_stats=stats),
        lambda c: adain.stylize_clip(c, model=model, style_stats=stats, window=FLAGS.statistics_window), fast)]
  if "gatys" in FLAGS.rows:
    small = load_clip(FLAGS.gatys_size, FLAGS.gatys_frames, weights,
                      image_io.resize_long_side(style, FLAGS.gatys_size))
    rows.append(("content (Gatys size)", small.frames, small.flow_seconds, small))
    rows += [(*r, small) for r in gatys_rows(small, weights, style)]
  record, table, sheet, labels = [], [], [], []
  per_frame = {label.split(" ")[0]: frames for label, frames, _, _ in rows if label.endswith("per frame")}
  for label, frames, seconds, clip in rows:
    error = clip.warping_error(frames)
    floor = clip.warping_error(clip.frames)
    base = per_frame.get(label.split(" ")[0])
    base_error = clip.warping_error(base) if base is not None else float("nan")
    base_style = clip.style_loss(base) if base is not None else float("nan")
    entry = {"row": label, "size": f"{frames.shape[2]}x{frames.shape[1]}", "frames": len(frames),
             "warping_error": error, "ratio_to_content": error / floor, "style_loss": clip.style_loss(frames),
             "seconds_per_frame": seconds, "ratio_to_per_frame": error / base_error}
    entry["style_ratio_to_per_frame"] = entry["style_loss"] / base_style
    record.append(entry)
    table.append([label, entry["size"], len(frames), f"{error:.3g}", f"{error / floor:.2f}",
                  f"{entry['ratio_to_per_frame']:.2f}", f"{entry['style_loss']:.4g}",
                  f"{entry['style_ratio_to_per_frame']:.2f}", f"{seconds:.2f}"])
    print(table[-1])
    picks = sorted({0, len(frames) // 3, 2 * len(frames) // 3, len(frames) - 1})
    sheet.append([frames[t] for t in picks] + [difference_map(frames, clip)])
    labels.append([f"{label}: frame {t + 1}" for t in picks] + ["|last - warped previous| x4"])
    write_gif(out / f"{label.replace(' ', '_').replace('+', 'plus').replace('(', '').replace(')', '')}.gif", frames)
  lines = common.markdown_table(["row", "size", "frames", "warping error", "x content", "x per frame",
                                 "style loss", "x per frame", "s / frame"],
                                table)
  common.write_markdown(out / "table.md", lines)
  image_io.save_image(out / "sheet.png", figures.contact_sheet(sheet, labels, cell_height=160))
  common.write_json(out / "results.json", {"flags": {k: FLAGS[k].value for k in (
      "clip", "style", "size", "max_frames", "gatys_size", "gatys_frames", "iterations_first", "iterations",
      "temporal_weights", "rows", "statistics_window", "consistency_lambda")}, "rows": record})
  print(f"wrote {out}/table.md, sheet.png, results.json and one GIF per row")


if __name__ == "__main__":
  app.run(main)
