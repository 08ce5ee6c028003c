"""Gatys et al. (2017), sec. 3: spatial control: two styles in two regions (guided Gram matrices), and a depth map
that makes strokes larger in front.

Run (from the repository root):
  python -m experiments.papers.gatys2017_spatial --quick   # 128 px, 50 L-BFGS iterations: ~1.5 minutes, 2-core CPU
  python -m experiments.papers.gatys2017_spatial           # 512 px, 500 iterations (GPU advised)

Regions: the masks are made here by a simple rule, a soft horizontal split of the Tübingen photo at 40% of its
height (above: "sky", below: "ground"; the real skyline is not straight, so some roofs fall in the sky region).
The sky gets starry_night, the ground the_scream. Depth: a generated vertical gradient (far at the top, near at the
bottom) with 3 depth bins whose style images are scaled 0.5x (far) .. 2x (near), one style (starry_night),
compared with the same transfer without depth, and the same depth map driving a texture synthesis (no content,
from noise), where stroke size is not confounded with the photo's own structure.

Writes outputs/gatys2017_spatial/sheet.png (row 1: content, the two masks, the two styles, the two-region result;
row 2: the depth map, the result without and with depth, the texture with depth) and results.json: for the
two-region result, per region the style loss between the region's guided Gram matrix and each style's Gram matrix
(relu2_1 + relu3_1; lower = closer; each region should be closest to its own style), and for the depth runs the
dominant texture wavelength in the top (far) and bottom (near) thirds.

Expected (--quick, seen): the sky region is painted in starry_night's blue/yellow swirls and the ground in
the_scream's orange/red bands, with a soft seam at the split; each region is ~140x (sky) and ~1100x (ground)
closer to its own style than to the other (results.json: each_region_closest_to_its_style). The depth row
balances the style layers (--style_layer_balance target, style weight 100). By eye, with depth the top (far) strip
gets small starry_night marks and the bottom long streaks, but at 128 px the measured horizontal wavelengths
(`dominant_wavelength(axis=1)` per third) do not separate the effect from the photo's own structure: no depth far
30.6 / near 67.2 px, with depth 26.0 / 61.2 px (far strokes finer, near not larger); the texture with depth grows
only slightly towards the bottom (20.2 / 22.4 px; 50 iterations from noise leave it grainy). The depth machinery
itself is measured on a synthetic texture in tests/controls_test.py (near strokes > 1.4x far).
"""

import time

import numpy as np

from nst_jax import figures, metrics
from nst_jax.io import image_io
from nst_jax.objective.config import StylizeConfig
from nst_jax.weights.store import resolve_weights

from experiments import common

QUICK = dict(size=128, iterations=50)
FULL = dict(size=512, iterations=500)
SKY_STYLE, GROUND_STYLE = "starry_night", "the_scream"
SPLIT_AT = 0.4


def thirds_wavelengths(image: np.ndarray) -> dict[str, float]:
  third = image.shape[0] // 3
  # Along rows: a third of the image is a wide, short strip, too short for the radially averaged spectrum.
  return {"far_top_third": metrics.dominant_wavelength(image[:third], axis=1),
          "near_bottom_third": metrics.dominant_wavelength(image[-third:], axis=1)}


def run(settings: common.Settings) -> dict:
  started = time.perf_counter()
  images, weights = common.Images(settings.data_dir), resolve_weights(settings.weights)
  content = images.content("tubingen")
  sky_style, ground_style = images.style(SKY_STYLE), images.style(GROUND_STYLE)
  shape = content.shape[:2]
  sky = common.soft_split(shape, at=SPLIT_AT, axis=0)
  ground = 1.0 - sky
  base = dict(size=settings.size, iterations=settings.iterations, log_every=50)
  # Depth changes the stroke size through the style image's scale, which shows in the deeper layers: they must
  # count (with raw VGG activations relu3_1..relu5_1 carry ~1% of the style loss), so the depth row balances them.
  depth_base = dict(base, style_layer_balance="target", style_weight=100.0)
  progress = not settings.quick

  regions, regions_record = common.run_stylize(
      "two regions", content=content, styles=[sky_style, ground_style], style_masks=[sky, ground],
      weights=weights, config=StylizeConfig(**base), progress=progress)
  names = [images.label(SKY_STYLE), images.label(GROUND_STYLE)]
  distances = {}
  for region, mask in (("sky", sky), ("ground", ground)):
    d = common.region_gram_distances(weights, regions.image, mask, [sky_style, ground_style])
    distances[region] = dict(zip(names, d))
  regions_record["gram_distances"] = distances
  regions_record["each_region_closest_to_its_style"] = bool(
      distances["sky"][names[0]] < distances["sky"][names[1]] and
      distances["ground"][names[1]] < distances["ground"][names[0]])

  depth = np.repeat(np.linspace(0.0, 1.0, shape[0], dtype=np.float32)[:, None], shape[1], axis=1)  # near = bottom
  plain, plain_record = common.run_stylize("no depth", content=content, styles=sky_style, weights=weights,
                                           config=StylizeConfig(**depth_base), progress=progress)
  deep, depth_record = common.run_stylize("with depth", content=content, styles=sky_style, depth=depth,
                                          weights=weights, config=StylizeConfig(**depth_base),
                                          progress=progress)
  texture, texture_record = common.run_stylize(
      "texture with depth", content=None, styles=sky_style, depth=depth, weights=weights, progress=progress,
      synthesis_shape=image_io.long_side_shape(shape, settings.size),
      config=StylizeConfig(**depth_base, init="noise"))
  for result, record in ((plain, plain_record), (deep, depth_record), (texture, texture_record)):
    record["wavelengths"] = thirds_wavelengths(result.image)

  def wl(record):
    return f"far {record['wavelengths']['far_top_third']:.1f} near {record['wavelengths']['near_bottom_third']:.1f}px"

  d_sky, d_ground = distances["sky"], distances["ground"]
  rows = [[content, sky, ground, sky_style, ground_style, regions.image],
          [depth, plain.image, deep.image, texture.image]]
  distance_label = (f"sky d {common.short(d_sky[names[0]])}/{common.short(d_sky[names[1]])}  ground "
                    f"{common.short(d_ground[names[0]])}/{common.short(d_ground[names[1]])}")
  labels = [[f"content: {images.label('tubingen')}", f"mask sky -> {names[0]}", f"mask ground -> {names[1]}",
             names[0], names[1], distance_label],
            ["depth (white = near)", f"no depth: {wl(plain_record)}", f"depth: {wl(depth_record)}",
             f"texture, depth: {wl(texture_record)}"]]
  sheet = figures.contact_sheet(rows, labels, cell_height=settings.cell_height)
  config = StylizeConfig()
  return common.write_outputs(settings, sheet, {
      "figure": "Gatys et al. 2017 spatial control", "images": images.source,
      "masks": f"soft horizontal split at {SPLIT_AT:.0%} of the height (sky above)",
      "two_regions": {"styles": {"sky": names[0], "ground": names[1]}, **regions_record},
      "depth": {"style": names[0], "depth_regions": config.depth_regions,
                "scales_far_to_near": [config.depth_far_scale, config.depth_near_scale],
                "without_depth": plain_record, "with_depth": depth_record,
                "texture_synthesis_with_depth": texture_record}}, started=started)


if __name__ == "__main__":
  common.app_run(run, __file__, quick=QUICK, full=FULL)
