"""Gatys et al. (2016), fig. 3: one photograph (Tübingen) rendered in the style of five paintings.

Run (from the repository root):
  python -m experiments.papers.gatys2016_fig3 --quick   # 96 px, 50 L-BFGS iterations: 70-150 s on a busy 2-core CPU
  python -m experiments.papers.gatys2016_fig3           # 512 px, 500 iterations, as in the paper (GPU advised)

Writes outputs/gatys2016_fig3/sheet.png (top row: the content photo, then the five paintings; bottom row: each
result under its painting) and results.json (per style: initial and final weighted loss terms, how many times
the style loss fell, seconds).

Expected (--quick, seen): each result takes its painting's palette and brush marks: blue/yellow swirls
(starry_night), orange/red bands (the_scream), green/ochre (shipwreck), gray-blue facets (seated-nude), orange
with dark contours (picasso); the row of houses and the river stay recognisable in starry_night and the_scream,
less so in the darker ones at this size (96 px is small for relu5_1). The style term falls 600-3600x in every
run. Settings are the library defaults (content init, style weight 10, content weight 1, tv weight 10,
relu1_1..relu5_1 style layers, relu4_2 content layer, average pooling).
"""

import time

from nst_jax import figures
from nst_jax.objective.config import StylizeConfig
from nst_jax.weights.store import resolve_weights

from experiments import common

QUICK = dict(size=96, iterations=50)
FULL = dict(size=512, iterations=500)


def run(settings: common.Settings) -> dict:
  started = time.perf_counter()
  images, weights = common.Images(settings.data_dir), resolve_weights(settings.weights)
  content = images.content("tubingen")
  config = StylizeConfig(size=settings.size, iterations=settings.iterations, log_every=50)
  top, labels_top = [content], [f"content: {images.label('tubingen')}"]
  bottom, labels_bottom, per_style = [None], [""], {}
  for name in common.STYLES:
    style = images.style(name)
    result, record = common.run_stylize(images.label(name), content=content, styles=style, weights=weights,
                                        config=config, progress=not settings.quick)
    per_style[images.label(name)] = record
    top.append(style)
    bottom.append(result.image)
    labels_top.append(images.label(name))
    labels_bottom.append(f"style loss / {record['style_reduction']:.0f}")
  sheet = figures.contact_sheet([top, bottom], [labels_top, labels_bottom], cell_height=settings.cell_height)
  return common.write_outputs(settings, sheet, {"figure": "Gatys et al. 2016 fig. 3", "images": images.source,
                                                "styles": per_style}, started=started)


if __name__ == "__main__":
  common.app_run(run, __file__, quick=QUICK, full=FULL)
