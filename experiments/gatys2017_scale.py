"""Gatys et al. (2017), sec. 4: control over spatial scale (stroke size) of the transferred style.

Run (from the repository root):
  python experiments/gatys2017_scale.py --quick   # 96 px, 50 L-BFGS iterations: 2-2.5 minutes, 2-core CPU
  python experiments/gatys2017_scale.py           # 512 px, 500 iterations (GPU advised)

Three rows, all on Tübingen:
  (a) style scale: starry_night resized to 0.5x, 1x, 2x the output size before its Gram matrices are taken; a
      larger style image puts more output pixels under each of its strokes, i.e. larger strokes.
      Each result is labelled with its dominant texture wavelength (`nst_jax.metrics.dominant_wavelength`,
      power-weighted mean wavelength of the gray image's spectrum, pixels) and its stroke wavelength
      (`metrics.stroke_wavelength`: the same, over the tiles where the photo is flat, i.e. the sky and the water,
      so that the photo's layout does not count).
  (b) style layer presets: fine (relu1_1, relu2_1), medium (+relu3_1), coarse (relu1_1..relu5_1), and
      structure (relu3_1..relu5_1 only).
  (c) scale mixing: coarse structure (relu3_1..relu5_1) from one painting with fine texture (relu1_1, relu2_1)
      from another, both ways round (style_layer_sets, one layer set per style).

Writes outputs/gatys2017_scale/sheet.png and results.json (per run: settings, loss terms, seconds, dominant
wavelength; for (a) also whether the wavelength grows with the scale).

All runs balance the style layers (--style_layer_balance target, style weight 100): with the raw VGG16
activations of the default weights relu3_1..relu5_1 carry ~1% of the style loss (relu4_1 ~1e-4, relu5_1 ~1e-6 of
relu1_1's), so without it the presets and mixes differ by little more than the noise.

Expected (--quick, 96 px, seen): (a) the dominant wavelength grows with the scale (17.2, 19.0, 20.7 px at 0.5x,
1x, 2x; results.json: wavelength_grows_with_scale); seen on the 2026-12-02 sheet: 0.5x has larger round marks
and dark swirls over the water, 2x a finer, more regular texture. (b) the presets look different: fine (relu1_1,
relu2_1) is a small ripple texture over the photo's layout, with a regular checker pattern in the sky (the
balanced layers' grid); medium adds ~10 px blobs; coarse bends the houses into larger swirls; structure (relu3_1..relu5_1 only)
keeps much of the photo's colour and warps its shapes into starry_night's swirls. The radial wavelength barely
moves (19.0-19.3 px) because the photo's layout dominates the spectrum at 96 px; the stroke wavelength (over the
sky and water only) orders the presets: fine 3.9, medium 4.1, coarse 4.7, structure 4.9 px (measured 2026-12-02;
with 16-px tiles at 96 px it cannot exceed 8 px). Scale rows: stroke wavelength 5.1 / 4.7 / 4.8 px at 0.5x / 1x /
2x (the whole-image one 17.2 / 19.0 / 20.7): the smaller style image gives larger round marks, as in the classic
implementation's own style-scale pictures (experiments/GATYS_NOTES.md, section 6). (c) scale mixing: the colours
come with the fine layers (structure starry_night + fine the_scream is orange/red, the reverse blue/white), the
large swirl shapes with the structure style.
"""

import time

import numpy as np

from nst_jax import figures, metrics
from nst_jax.io import image_io
from nst_jax.methods.stylize_config import STYLE_LAYER_PRESETS, StylizeConfig
from nst_jax.weights.store import resolve_weights

import common

QUICK = dict(size=96, iterations=50)
FULL = dict(size=512, iterations=500)
SCALES = (0.5, 1.0, 2.0)
PRESETS = ("fine", "medium", "coarse", "structure")
STYLE, MIX = "starry_night", ("starry_night", "the_scream")
# Every style layer must count for stroke size to be controllable: with raw VGG activations relu3_1..relu5_1 carry
# ~1% of the style loss (see the docstring), so this figure balances the layers by their targets.
BALANCED = dict(style_layer_balance="target", style_weight=100.0)


def run(settings: common.Settings) -> dict:
  started = time.perf_counter()
  images, weights = common.Images(settings.data_dir), resolve_weights(settings.weights)
  content, style = images.content("tubingen"), images.style(STYLE)
  base = dict(size=settings.size, iterations=settings.iterations, log_every=50, **BALANCED)

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
    row_labels.append(f"{preset}: {layers[0][4:]}..{layers[-1][4:]}  wl {wavelength:.1f}px, strokes "
                      f"{presets[preset]['stroke_wavelength']:.1f}px")
  rows.append(row)
  labels.append(row_labels)
  record["presets"] = presets

  a, b = MIX
  row, row_labels, mixes = [images.style(a), images.style(b)], [f"(c) A: {images.label(a)}",
                                                                 f"B: {images.label(b)}"], {}
  for structure_from, texture_from in (MIX, MIX[::-1]):
    key = f"structure {images.label(structure_from)} + fine {images.label(texture_from)}"
    image, mixes[key] = one(key, [images.style(structure_from), images.style(texture_from)],
                            style_layer_sets=(STYLE_LAYER_PRESETS["structure"],
                                              STYLE_LAYER_PRESETS["fine"]))
    row.append(image)
    row_labels.append(f"structure {'A' if structure_from == a else 'B'} + fine {'A' if texture_from == a else 'B'}")
  rows.append(row)
  labels.append(row_labels)
  record["scale_mixing"] = mixes
  sheet = figures.contact_sheet(rows, labels, cell_height=settings.cell_height)
  return common.write_outputs(settings, sheet, record, started=started)


if __name__ == "__main__":
  common.app_run(run, __file__, quick=QUICK, full=FULL)
