"""Gatys et al. (2017), sec. 4: control over spatial scale (stroke size) of the transferred style, at the stylize
defaults (no re-weighting).

Run (from the repository root):
  python -m experiments.papers.gatys2017_scale --quick   # 96 px, 50 L-BFGS iterations: a few minutes, 2-core CPU
  python -m experiments.papers.gatys2017_scale --size 256 --iterations 150   # docs/gatys.md's stroke sizes
  python -m experiments.papers.gatys2017_scale           # 512 px, 500 iterations (GPU advised)

Three rows, all on Tübingen with Starry Night:
  (a) style scale: the style resized to 0.5x, 1x, 2x the output size before its Gram matrices are taken.
  (b) style layer presets: fine (relu1_1, relu2_1), medium (the five default layers + relu1_1@2, relu2_1@2: the
      shallow layers also matched on the image downsampled 2x, `nst_jax.losses.octaves`), coarse (the same with
      4x), structure (relu3_1..relu5_1 only).
  (c) scale mixing: coarse structure (relu3_1..relu5_1) from one painting with fine texture (relu1_1, relu2_1)
      from the other, both ways round (style_layer_sets, one layer set per style), at the defaults: each set is
      weighted to the strongest set's loss scale (`nst_jax.objective.layer_balance.layer_set_gains`), so the deep
      set counts without re-weighting (docs/gatys.md). Octave layers do not mix this way: relu1_1@4 of one
      painting against relu1_1 of another asks for two palettes, and the optimiser meets both with a low-pass
      image in one and a high-frequency pattern in the other (docs/gatys.md).
Each result is labelled with its dominant texture wavelength (`nst_jax.metrics.dominant_wavelength`,
power-weighted mean wavelength of the gray image's spectrum, pixels) and its stroke wavelength
(`metrics.stroke_wavelength`: the same over the tiles where the photo is flat, the sky and the water, so that the
photo's layout does not count; tiles of an eighth of the long side, so at 96 px it cannot exceed 6 px).

Writes outputs/gatys2017_scale/sheet.png and results.json (per run: settings, loss terms, seconds, wavelengths;
for (a) whether the wavelength grows with the scale; for (b) `stroke_spread`, coarse over fine).

Expected (256 px, 150 iterations, measured and seen: docs/gatys.md): the stroke wavelength of the
presets rises fine < medium < coarse, coarse at least 1.5x fine (1.54x); fine is the small-swirl texture of the
default, coarse paints Starry Night's large swirls and round yellow stars over the sky and the town.
"""

import time

import numpy as np

from nst_jax import figures, metrics
from nst_jax.io import image_io
from nst_jax.objective.config import STYLE_LAYER_PRESETS, StylizeConfig
from nst_jax.weights.store import resolve_weights

from experiments import common

QUICK = dict(size=96, iterations=50)
FULL = dict(size=512, iterations=500)
SCALES = (0.5, 1.0, 2.0)
PRESETS = ("fine", "medium", "coarse", "structure")
STYLE, MIX = "starry_night", ("starry_night", "the_scream")


def run(settings: common.Settings) -> dict:
  started = time.perf_counter()
  images, weights = common.Images(settings.data_dir), resolve_weights(settings.weights)
  content, style = images.content("tubingen"), images.style(STYLE)
  base = dict(size=settings.size, iterations=settings.iterations, log_every=50)

  def one(name, styles, **overrides):
    config = StylizeConfig(**base, **overrides)
    result, record = common.run_stylize(name, content=content, styles=styles, weights=weights, config=config,
                                        progress=not settings.quick)
    record["dominant_wavelength"] = metrics.dominant_wavelength(result.image)
    record["stroke_wavelength"] = metrics.stroke_wavelength(result.image,
                                                            image_io.resize(content, *result.image.shape[:2]))
    return result.image, record

  rows, labels, record = [], [], {"figure": "Gatys et al. 2017 spatial scale", "images": images.source}
  row, row_labels, scales = [style], [f"(a) style: {images.label(STYLE)}"], {}
  for scale in SCALES:
    image, scales[scale] = one(f"style_scale {scale}", style, style_scale=(scale,))
    row.append(image)
    row_labels.append(f"scale {scale:g}x  wl {scales[scale]['dominant_wavelength']:.1f}px, strokes "
                      f"{scales[scale]['stroke_wavelength']:.1f}px")
  rows.append(row)
  labels.append(row_labels)
  wavelengths = [scales[s]["dominant_wavelength"] for s in SCALES]
  record["style_scale"] = {"style": images.label(STYLE), "runs": scales,
                           "wavelength_grows_with_scale": bool(np.all(np.diff(wavelengths) > 0))}

  row, row_labels, presets = [content], [f"(b) content: {images.label('tubingen')}"], {}
  for preset in PRESETS:
    layers = STYLE_LAYER_PRESETS[preset]
    image, presets[preset] = one(f"preset {preset}", style, style_layers=layers)
    presets[preset]["layers"] = layers
    row.append(image)
    wavelength = presets[preset]["dominant_wavelength"]
    row_labels.append(f"{preset}: {len(layers)} layers  wl {wavelength:.1f}px, strokes "
                      f"{presets[preset]['stroke_wavelength']:.1f}px")
  rows.append(row)
  labels.append(row_labels)
  record["presets"] = presets
  record["stroke_spread"] = presets["coarse"]["stroke_wavelength"] / presets["fine"]["stroke_wavelength"]
  print(f"stroke wavelength coarse / fine: {record['stroke_spread']:.2f}x")

  a, b = MIX
  row, row_labels, mixes = [images.style(a), images.style(b)], [f"(c) A: {images.label(a)}",
                                                                 f"B: {images.label(b)}"], {}
  for structure_from, texture_from in (MIX, MIX[::-1]):
    key = f"structure {images.label(structure_from)} + fine {images.label(texture_from)}"
    image, mixes[key] = one(key, [images.style(structure_from), images.style(texture_from)],
                            style_layer_sets=(STYLE_LAYER_PRESETS["structure"], STYLE_LAYER_PRESETS["fine"]))
    row.append(image)
    row_labels.append(f"structure {'A' if structure_from == a else 'B'} + fine {'A' if texture_from == a else 'B'}")
  rows.append(row)
  labels.append(row_labels)
  record["scale_mixing"] = mixes
  sheet = figures.contact_sheet(rows, labels, cell_height=settings.cell_height)
  return common.write_outputs(settings, sheet, record, started=started)


if __name__ == "__main__":
  common.app_run(run, __file__, quick=QUICK, full=FULL)
