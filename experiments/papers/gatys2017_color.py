"""Gatys et al. (2017), sec. 5: preserving the content's colours (luminance-only transfer, colour histogram matching).

Run (from the repository root):
  python -m experiments.papers.gatys2017_color --quick   # 96 px, 50 L-BFGS iterations: 60-100 s, 2-core CPU
  python -m experiments.papers.gatys2017_color           # 512 px, 500 iterations (GPU advised)

Tübingen in the style of the_scream (orange/red sky, far from the photo's blue sky), four ways: plain transfer;
luminance-only (style and content luminance matched, VGG sees luminance only, the result gets the content's I/Q
chroma back, YIQ space); the style's colour histogram matched to the content's before transfer, with the
Cholesky or the eigen (symmetric) square root of the colour covariances.

Writes outputs/gatys2017_color/sheet.png (top row: content, style, the four results; bottom row, under each
result: the style image as the network sees it) and results.json (per output: mean absolute error of the YIQ
channels to the content, iq_mae = mean of the I and Q errors; loss terms; seconds).

Expected (--quick, seen): the plain transfer turns sky and river orange/red (iq_mae ~0.085); luminance-only keeps
the photo's blue sky and coloured houses exactly (iq_mae ~1e-8: the chroma is copied back) with the_scream's
strokes in the brightness only; both histogram variants recolour the style to the photo's blue-dominated palette
(bottom row), so the result is mostly blue with orange streaks where the style has its brightest strokes (iq_mae
~0.046-0.048, about half of plain's); Cholesky and eigen look nearly alike. iq_mae: plain > histogram > luminance.
"""

import time

import numpy as np

from nst_jax import figures
from nst_jax.io import image_io
from nst_jax.losses import color
from nst_jax.objective.images import prepare_styles
from nst_jax.objective.config import StylizeConfig
from nst_jax.weights.store import resolve_weights

from experiments import common

QUICK = dict(size=96, iterations=50)
FULL = dict(size=512, iterations=500)
STYLE = "the_scream"
VARIANTS = {  # name -> StylizeConfig overrides
    "plain": dict(preserve_colors="none"),
    "luminance": dict(preserve_colors="luminance"),
    "histogram (cholesky)": dict(preserve_colors="histogram", color_method="cholesky"),
    "histogram (eigen)": dict(preserve_colors="histogram", color_method="eigen"),
}


def yiq_errors(image: np.ndarray, content: np.ndarray) -> dict[str, float]:
  """Mean absolute YIQ differences of `image` to `content` (resized to it)."""
  diff = np.abs(np.asarray(color.rgb_to_yiq(image)) -
                np.asarray(color.rgb_to_yiq(image_io.resize(content, *image.shape[:2]))))
  y, i, q = (float(diff[..., k].mean()) for k in range(3))
  return {"y_mae": y, "i_mae": i, "q_mae": q, "iq_mae": (i + q) / 2}


def run(settings: common.Settings, variants: tuple[str, ...] = tuple(VARIANTS)) -> dict:
  """The figure; `variants` (names of VARIANTS) narrows it, for a fast test."""
  started = time.perf_counter()
  images, weights = common.Images(settings.data_dir), resolve_weights(settings.weights)
  content, style = images.content("tubingen"), images.style(STYLE)
  top, top_labels = [content, style], [f"content: {images.label('tubingen')}", f"style: {images.label(STYLE)}"]
  bottom, bottom_labels, outputs = [None, None], ["", ""], {}
  for name in variants:
    config = StylizeConfig(size=settings.size, iterations=settings.iterations, log_every=50, **VARIANTS[name])
    result, record = common.run_stylize(name, content=content, styles=style, weights=weights, config=config,
                                        progress=not settings.quick)
    errors = yiq_errors(result.image, content)
    outputs[name] = {**errors, **record}
    top.append(result.image)
    top_labels.append(f"{name}  IQ err {errors['iq_mae']:.2g}")
    small = image_io.resize_long_side(content, settings.size)
    (seen,) = prepare_styles([image_io.resize_long_side(style, settings.size)], content=small, config=config)
    bottom.append(np.clip(seen, 0, 1))
    bottom_labels.append("style as the network sees it")
  sheet = figures.contact_sheet([top, bottom], [top_labels, bottom_labels], cell_height=settings.cell_height)
  return common.write_outputs(settings, sheet, {"figure": "Gatys et al. 2017 colour control",
                                                "images": images.source, "style": images.label(STYLE),
                                                "outputs": outputs}, started=started)


if __name__ == "__main__":
  common.app_run(run, __file__, quick=QUICK, full=FULL)
