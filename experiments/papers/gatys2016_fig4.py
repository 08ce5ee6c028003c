"""Gatys et al. (2016), fig. 4: style layers (rows) x content/style ratio (columns), Tübingen in starry_night.

Run (from the repository root):
  python -m experiments.papers.gatys2016_fig4 --quick   # 3x3 grid, 80 px, 40 iterations: 65-180 s, 2-core CPU
  python -m experiments.papers.gatys2016_fig4           # 5x4 grid at 512 px, 500 iterations from noise (GPU advised)

Rows: the style loss on the layers up to relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (cumulative, equal layer
weights; --quick: up to relu1_1, relu3_1, relu5_1). Columns: the paper's content/style ratios alpha/beta = 1e-5,
1e-4, 1e-3, 1e-2 (--quick: 1e-5, 1e-3, 1e-2); content weight 1.

Mapping of the ratio (relative, not the paper's numbers): our content and style losses are normalised (means
over feature entries, Gram matrices divided by the number of positions), the paper's are sums, so the paper's
alpha/beta cannot be copied. We keep one decade of ratio = one decade of style weight and fix the offset where
the trade-off is visible: style_weight = 1e-7 / ratio, i.e. 1e-2, 1e-3, 1e-4, 1e-5, and tv_weight = style_weight
(the library defaults have tv_weight = style_weight = 10; scaling both keeps that balance, so a column differs only
in how strongly the content term pulls; without it the fixed TV term would blur the right-hand columns). Measured
on this image at 80 px from the content photo: style weights from 10 (the library default) down to ~1e-2 all look
alike, fully painted (the style term dominates); the photo only comes back below ~1e-3. So our default 10
corresponds to a far smaller ratio (~1e-8 in this mapping) than any column of the paper's figure.
Initialisation: white noise in full mode, as in the paper; the content photo in --quick mode, because 40 L-BFGS
iterations from noise at 80 px leave visible noise (the ratio then shows as how much texture is painted over the
photo rather than how much of the photo emerges from noise). The mapping was calibrated in --quick mode; the full
mode has not been run on this machine (a probe from noise at 80 px, 60 iterations gave texture at 1e-2, the
photo's layout at 1e-3 and a content reconstruction at 1e-4, so the same columns should span the trade-off).

Writes outputs/gatys2016_fig4/sheet.png (first row: content and style; then the grid, each cell labelled with its
layers, ratio and style weight) and results.json (per cell: layers, ratio, style weight, loss terms, seconds).

Expected (--quick, seen): along each row, from left (1e-5) to right (1e-2) the photograph comes back: the left
column is painted in blue/yellow starry-night strokes, the right one shows the pink/white houses and the blue sky
of the photo (slightly blurred; relu4_2 does not pin down pixel detail); the final content term falls from left to
right in every row (results.json: content_term_falls_left_to_right). Down the left column the texture grows from
colour blotches that follow the photo's edges (relu1_1 only) to larger swirling strokes that repaint the sky and
river (up to relu3_1 / relu5_1); at 80 px the relu3_1 and relu5_1 rows look alike (relu5_1 sees a 5x4 grid).
"""

import time

import numpy as np

from nst_jax import figures
from nst_jax.objective.config import STYLE_LAYERS, StylizeConfig
from nst_jax.weights.store import resolve_weights

from experiments import common

QUICK = dict(size=80, iterations=40)
FULL = dict(size=512, iterations=500)
LAYERS = STYLE_LAYERS  # relu1_1 .. relu5_1
RATIOS = (1e-5, 1e-4, 1e-3, 1e-2)
QUICK_DEPTHS, QUICK_RATIOS = (1, 3, 5), (1e-5, 1e-3, 1e-2)
STYLE = "starry_night"


def style_weight_for_ratio(ratio: float) -> float:
  """Our style weight for the paper's content/style ratio (content weight 1); see the module docstring."""
  return 1e-7 / ratio


def run(settings: common.Settings) -> dict:
  started = time.perf_counter()
  images, weights = common.Images(settings.data_dir), resolve_weights(settings.weights)
  content, style = images.content("tubingen"), images.style(STYLE)
  depths, ratios = (QUICK_DEPTHS, QUICK_RATIOS) if settings.quick else (range(1, 6), RATIOS)
  init = "content" if settings.quick else "noise"
  rows, cells = [[content, style]], []
  labels = [[f"content: {images.label('tubingen')}", f"style: {images.label(STYLE)}"]]
  for depth in depths:
    layers = LAYERS[:depth]
    row, row_labels = [], []
    for ratio in ratios:
      config = StylizeConfig(size=settings.size, iterations=settings.iterations, style_layers=layers,
                             style_weight=style_weight_for_ratio(ratio),
                             tv_weight=style_weight_for_ratio(ratio), init=init, log_every=50)
      result, record = common.run_stylize(f"up to {layers[-1]}, ratio {ratio:g}", content=content, styles=style,
                                          weights=weights, config=config, progress=not settings.quick)
      cells.append({"layers": layers, "ratio": ratio, "style_weight": config.style_weight, **record})
      row.append(result.image)
      row_labels.append(f"..{layers[-1]}  a/b {ratio:.0e}  sw {config.style_weight:.0e}")
    rows.append(row)
    labels.append(row_labels)
  sheet = figures.contact_sheet(rows, labels, cell_height=settings.cell_height)
  content_terms = [c["final_terms"]["content"] for c in cells]
  by_row = [content_terms[i:i + len(ratios)] for i in range(0, len(cells), len(ratios))]
  return common.write_outputs(settings, sheet, {
      "figure": "Gatys et al. 2016 fig. 4", "images": images.source, "style": images.label(STYLE), "init": init,
      "style_weight_mapping": "style_weight = tv_weight = 1e-7 / ratio, content_weight 1 (relative, see docstring)",
      "cells": cells,
      "content_term_falls_left_to_right": bool(all(np.all(np.diff(r) < 0) for r in by_row))}, started=started)


if __name__ == "__main__":
  common.app_run(run, __file__, quick=QUICK, full=FULL)
