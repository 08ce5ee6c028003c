"""Full-HD style transfer on a CPU with the pyramid and the seamless tiled loss (the high-resolution acceptance run).

Run (from the repository root; about 25-40 min on 2 shared CPU cores):

  nice -n 10 /usr/bin/time -v python -m experiments.studies.highres_demo \
      --content ../shared/data/artistic/content/tubingen.jpg \
      --style ../shared/data/artistic/style/starry_night.jpg

Crops the content to 16:9 and produces a 1920x1080 image with the schedule 480 -> 960 -> 1920 px (long side,
scale step 2), 40, 10 and 3 L-BFGS iterations, 640 px tiles at the top scale (3 x 2 tiles with the exact halo of
96 px for relu5_1 + 16 px overlap). Writes to outputs/highres/: result.png (8-bit), result16.png (16-bit),
crops.png (100% zoom crops centred on tile borders and their crossings), report.json (per-scale shapes, tiles,
predicted peak bytes, final losses, seam ratio, wall time, peak RSS). Expected: peak RSS <= 8 GB, seam ratio ~1
(<= 1.1), no visible seam in crops.png. Measured (with --scale_iterations 30,8,3, CPU shared with other jobs):
45 min 42 s wall, peak RSS 4.7 GiB, seam ratio 0.97, no seam visible; the top scale's 3 iterations leave its style
loss unconverged (4.0e5 -> 1.3e5). Resumable: rerunning after a kill continues from outputs/highres/checkpoint.
"""

from __future__ import annotations

import json
import pathlib
import resource
import time

import numpy as np
from absl import app, flags

from nst_jax import figures
from nst_jax.highres import highres_config, tiling
from nst_jax.io import atomic, image_io
from nst_jax.methods import gatys
from nst_jax.objective.config import StylizeConfig
from nst_jax.weights.store import resolve_weights

flags.DEFINE_string("content", "../shared/data/artistic/content/tubingen.jpg", "Content image.")
flags.DEFINE_string("style", "../shared/data/artistic/style/starry_night.jpg", "Style image.")
flags.DEFINE_integer("width", 1920, "Output width (the content is centre-cropped to width:height).")
flags.DEFINE_integer("height", 1080, "Output height.")
flags.DEFINE_integer("start_size", 480, "Long side of the first scale.")
flags.DEFINE_list("scale_iterations", ["40", "10", "3"], "L-BFGS iterations per scale, coarse to fine.")
flags.DEFINE_integer("tile_size", 640, "Tile interior in pixels (0: automatic from --max_memory_gb).")
flags.DEFINE_float("max_memory_gb", 6.0, "Memory budget for automatic tiles.")
flags.DEFINE_string("output_dir", "outputs/highres", "Where results go.")
FLAGS = flags.FLAGS


def crop_to_aspect(image: np.ndarray, width: int, height: int) -> np.ndarray:
  h, w = image.shape[:2]
  if w * height > h * width:
    keep = round(h * width / height)
    return image[:, (w - keep) // 2:(w - keep) // 2 + keep]
  keep = round(w * height / width)
  return image[(h - keep) // 2:(h - keep) // 2 + keep]


def border_crops(image: np.ndarray, tile: int, size: int = 256) -> list[np.ndarray]:
  """100% crops centred on tile-border crossings and on border midpoints (interior borders only)."""
  h, w = image.shape[:2]
  ys, xs = list(range(tile, h, tile)), list(range(tile, w, tile))
  centres = [(y, x) for y in ys for x in xs] + [(y, x - tile // 2) for y in ys[:1] for x in xs[:2]]
  crops = []
  for y, x in centres[:6]:
    y0, x0 = min(max(0, y - size // 2), h - size), min(max(0, x - size // 2), w - size)
    crops.append(image[y0:y0 + size, x0:x0 + size])
  return crops


def run(out: pathlib.Path) -> dict:
  content = crop_to_aspect(image_io.load_image(FLAGS.content, what="content image"), FLAGS.width, FLAGS.height)
  content = image_io.resize(content, FLAGS.height, FLAGS.width)
  style = image_io.load_image(FLAGS.style, what="style image")
  config = StylizeConfig(size=max(FLAGS.width, FLAGS.height), log_every=1)
  hr = highres_config.HighresConfig(start_size=FLAGS.start_size, scale_step=2.0,
                                    scale_iterations=tuple(int(i) for i in FLAGS.scale_iterations),
                                    tile_size=FLAGS.tile_size, max_memory_gb=FLAGS.max_memory_gb,
                                    checkpoint_dir=str(out / "checkpoint"), checkpoint_every=0)
  start = time.perf_counter()
  result, reports = gatys.stylize_highres(content=content, styles=[style], weights=resolve_weights("hed-vgg16"),
                                            config=config, hr=hr)
  seconds = time.perf_counter() - start
  image_io.save_image(out / "result.png", result.image)
  image_io.save_image(out / "result16.png", result.image, bits=16)
  tile = reports[-1].tile
  crops = border_crops(result.image, tile)
  image_io.save_image(out / "crops.png", figures.contact_sheet([crops[:3], crops[3:]], cell_height=256))
  report = {"seconds": seconds, "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "seam_ratio": tiling.seam_ratio(result.image, tile), "scales": [vars(r) for r in reports]}
  return report


def main(argv):
  del argv
  out = pathlib.Path(FLAGS.output_dir)
  out.mkdir(parents=True, exist_ok=True)
  report = run(out)
  atomic.write_text(out / "report.json", json.dumps(report, indent=2, default=str) + "\n")
  print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
  app.run(main)
