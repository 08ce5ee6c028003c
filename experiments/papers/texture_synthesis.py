"""Texture synthesis (Gatys et al. 2015; content=None): from each painting alone, from a 50/50 blend of two, and
two textures side by side in two regions (guided Gram matrices, Gatys et al. 2017).

Run (from the repository root):
  python -m experiments.papers.texture_synthesis --quick   # 96x96 px, 60 L-BFGS its from noise: ~2 min, 2-core CPU
  python -m experiments.papers.texture_synthesis           # 512x512 px, 500 iterations (GPU advised)

Every run starts from uniform white noise (seed 0) and minimises the style loss (relu1_1..relu5_1, Gram matrices)
plus the default total-variation term; outputs are square (size x size).

Writes outputs/texture_synthesis/sheet.png (row 1: the five paintings; row 2: their textures; row 3: the two
paintings that are mixed, their 50/50 blend, the left/right mask and the two-region texture) and results.json: per
run the loss terms and seconds; for the blend and the regions the style loss (relu2_1 + relu3_1) of the output's
(region's) Gram matrix to each of the two styles (lower = closer).

Expected (--quick, seen): each texture carries its painting's palette and stroke character without its
composition (blue/yellow swirls, orange/red bands, green/ochre waves, gray facets, orange/cream shapes with dark
outlines), with some pixel noise left from the noise start; the style term falls 500-8600x. The blend mixes blue
swirls with orange bands and sits between the styles (distance to starry_night ~53k, to the_scream ~74k, against
~222k between the two paintings themselves); the two-region texture is starry_night on the left and the_scream
on the right, each half ~15-35x closer to its own style (left 5.8k vs 203k, right 12k vs 180k).
"""

import dataclasses
import time

import numpy as np

from nst_jax import figures
from nst_jax.io import image_io
from nst_jax.objective.config import StylizeConfig
from nst_jax.weights.store import resolve_weights

from experiments import common

QUICK = dict(size=96, iterations=60)
FULL = dict(size=512, iterations=500)
PAIR = ("starry_night", "the_scream")


def run(settings: common.Settings) -> dict:
  started = time.perf_counter()
  images, weights = common.Images(settings.data_dir), resolve_weights(settings.weights)
  shape = (settings.size, settings.size)
  config = StylizeConfig(size=settings.size, iterations=settings.iterations, init="noise", log_every=50)

  def synthesize(name, styles, **kwargs):
    return common.run_stylize(name, content=None, styles=styles, weights=weights, config=config,
                              synthesis_shape=shape, progress=not settings.quick, **kwargs)

  paintings, textures, singles = [], [], {}
  for name in common.STYLES:
    result, singles[images.label(name)] = synthesize(name, images.style(name))
    paintings.append(images.style(name))
    textures.append(result.image)
  a, b = (images.style(n) for n in PAIR)
  names = [images.label(n) for n in PAIR]

  blend, blend_record = common.run_stylize("blend 50/50", content=None, styles=[a, b], weights=weights,
                                           config=dataclasses.replace(config, style_blend=(0.5, 0.5)),
                                           synthesis_shape=shape, progress=not settings.quick)
  whole = np.ones(shape, np.float32)
  # Reference scale for the distances: painting A itself (resized to the output) measured against A and B.
  reference = dict(zip(names, common.region_gram_distances(weights, image_io.resize(a, *shape), whole, [a, b])))
  blend_record["gram_distances"] = dict(zip(names, common.region_gram_distances(weights, blend.image, whole, [a, b])))

  left = common.soft_split(shape, at=0.5, axis=1, softness=0.04)
  regions, regions_record = synthesize("two regions", [a, b], style_masks=[left, 1.0 - left])
  distances = {side: dict(zip(names, common.region_gram_distances(weights, regions.image, mask, [a, b])))
               for side, mask in (("left", left), ("right", 1.0 - left))}
  regions_record["gram_distances"] = distances
  regions_record["each_region_closest_to_its_style"] = bool(
      distances["left"][names[0]] < distances["left"][names[1]] and
      distances["right"][names[1]] < distances["right"][names[0]])

  d_blend = blend_record["gram_distances"]
  rows = [paintings, textures, [a, b, blend.image, left, regions.image]]
  labels = [[images.label(n) for n in common.STYLES],
            [f"texture, style loss / {singles[images.label(n)]['style_reduction']:.0f}" for n in common.STYLES],
            [f"A: {names[0]}", f"B: {names[1]}",
             f"blend 50/50: d A {common.short(d_blend[names[0]])} B {common.short(d_blend[names[1]])}",
             "mask: A left, B right",
             f"left d A/B {common.short(distances['left'][names[0]])}/{common.short(distances['left'][names[1]])}  "
             f"right {common.short(distances['right'][names[0]])}/{common.short(distances['right'][names[1]])}"]]
  sheet = figures.contact_sheet(rows, labels, cell_height=settings.cell_height)
  return common.write_outputs(settings, sheet, {
      "figure": "texture synthesis", "images": images.source, "init": "noise", "shape": shape,
      "reference_distances_of_painting_A": reference,
      "single_styles": singles, "blend": {"styles": names, "weights": [0.5, 0.5], **blend_record},
      "two_regions": {"left": names[0], "right": names[1], **regions_record}}, started=started)


if __name__ == "__main__":
  common.app_run(run, __file__, quick=QUICK, full=FULL)
