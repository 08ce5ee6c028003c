"""Photorealistic transfer through the tiled high-resolution engine against the untiled run, on one paper pair.

Run (from the repository root; needs ../shared/data/photoreal/, exits with a message without it):
  nice -n 10 python -m experiments.studies.photoreal_tiles   # pair 1 at 256 px, 4 tiles of 128 px, 20 + 10 L-BFGS

Runs `nst_jax.methods.photoreal.photoreal` twice with the reference's settings (segmentation maps, relu1_1..relu5_1,
matting term in stage 2, local-affine post-processing): untiled, and with `highres_config.HighresConfig(tile_size=...)`
(exact default halo). Prints and writes outputs/photoreal_tiles/results.json: wall times, both runs' first and final
loss terms, the differences between the images after stage 1, stage 2 and post-processing, and the seam ratio at
the tile borders (`tiling.seam_ratio`) of both stage-2 images.

Expected (seen on the shared 2-core CPU under load 4-6): 256x160, 4 tiles of 128 + 2 * 96 px; the first
evaluation agrees to <= 1.2e-7 relative, the final terms within 0.2%; L-BFGS magnifies float rounding over 20
iterations, so the images differ by a mean of 2e-3 after stage 1 and 5e-4 (max 0.015) after post-processing; seam
ratio 1.67 tiled vs 1.68 untiled (no seam); 592-618 s tiled vs 78 s untiled (the exact halo makes the four windows
6.25x the image's pixels).
"""

from __future__ import annotations

import json
import pathlib
import time

import numpy as np
from absl import app, flags

from nst_jax.highres import highres_config, tiling
from nst_jax.io import atomic, image_io
from nst_jax.losses import segmentation
from nst_jax.methods import photoreal
from nst_jax.weights.store import resolve_weights

flags.DEFINE_string("data_dir", "../shared/data", "Folder holding photoreal/{input,style,segmentation}.")
flags.DEFINE_integer("pair", 1, "Pair number of the paper's examples.")
flags.DEFINE_integer("size", 256, "Long side in pixels.")
flags.DEFINE_integer("tile_size", 128, "Tile interior in pixels.")
flags.DEFINE_integer("stage1_iterations", 20, "Stage-1 L-BFGS iterations.")
flags.DEFINE_integer("stage2_iterations", 10, "Stage-2 L-BFGS iterations.")
flags.DEFINE_string("out_dir", "outputs/photoreal_tiles", "Where results.json goes.")
FLAGS = flags.FLAGS


def compare(*, content, style, content_seg, style_seg, config: photoreal.PhotorealConfig, tile: int) -> dict:
  weights = resolve_weights("hed-vgg16")
  runs, seconds = {}, {}
  for name, hr in (("untiled", None), ("tiled", highres_config.HighresConfig(tile_size=tile))):
    start = time.perf_counter()
    runs[name] = photoreal.photoreal(content=content, style=style, weights=weights, config=config,
                                     content_seg=content_seg, style_seg=style_seg, hr=hr)
    seconds[name] = time.perf_counter() - start
  u, t = runs["untiled"], runs["tiled"]
  diffs = {name: {"max": float(np.abs(a - b).max()), "mean": float(np.abs(a - b).mean())}
           for name, a, b in (("stage1", u.stage1.image, t.stage1.image), ("unsmoothed", u.unsmoothed, t.unsmoothed),
                              ("final", u.image, t.image))}
  stages = {f"stage{k}": {"initial": {"untiled": a.initial_terms, "tiled": b.initial_terms},
                          "final": {"untiled": a.final_terms, "tiled": b.final_terms}}
            for k, a, b in ((1, u.stage1, t.stage1), (2, u.stage2, t.stage2)) if a is not None}
  grid = t.grid
  return {"shape": list(u.image.shape[:2]), "tiles": grid.num_tiles, "tile": grid.tile, "halo": grid.halo,
          "seconds": seconds, "stages": stages, "differences": diffs,
          "seam_ratio": {"tiled": tiling.seam_ratio(t.unsmoothed, grid.tile),
                         "untiled": tiling.seam_ratio(u.unsmoothed, grid.tile)}}


def main(argv):
  del argv
  root = pathlib.Path(FLAGS.data_dir) / "photoreal"
  n = FLAGS.pair
  if not (root / "input" / f"in{n}.png").exists():
    raise SystemExit(f"{root}/input/in{n}.png not found; this experiment needs the paper's pairs")
  load = lambda sub, prefix: image_io.load_image(root / sub / f"{prefix}{n}.png", what=f"{sub}/{prefix}{n}.png")
  config = photoreal.PhotorealConfig(size=FLAGS.size, stage1_iterations=FLAGS.stage1_iterations,
                                     stage2_iterations=FLAGS.stage2_iterations)
  record = compare(content=load("input", "in"), style=load("style", "tar"),
                   content_seg=segmentation.load_map(root / "segmentation" / f"in{n}.png", what="content map"),
                   style_seg=segmentation.load_map(root / "segmentation" / f"tar{n}.png", what="style map"),
                   config=config, tile=FLAGS.tile_size)
  atomic.write_json(pathlib.Path(FLAGS.out_dir) / "results.json", record)
  print(json.dumps(record, indent=1))


if __name__ == "__main__":
  app.run(main)
