"""Feed-forward transfer (AdaIN, WCT) next to Gatys and the classic Lua neural-style on the 18 reference pictures.

Run (from the repository root; needs ../shared/data/reference/neural-style/, skips cleanly without it):
  python -m experiments.studies.feedforward_comparison                       # 512 px, every method at its defaults
  python -m experiments.studies.feedforward_comparison --pairs golden_gate_scream --methods adain,wct
  python -m experiments.studies.feedforward_comparison --gatys_dir outputs/classic_comparison
      # + Gatys (its ours_<pair>.png)

For each picture of `../shared/data/reference/neural-style/` (its README lists the settings) every method is run at
its defaults plus the picture's own setting (blend weights; original colours as luminance-only transfer; style
scale by resizing the style image), and measured with:

* coverage: `metrics.style_coverage`, the share of 32-px tiles whose texture (luma only: band energies, stroke
  orientations) is nearer to some tile of the painting than to the photo's own tile there. The look measure:
  the classic pictures and a recoloured photo (`cast`: the content given the style's colour distribution by
  `color.match_color_histogram`, no texture) must land on opposite sides of COVERAGE_BAR.
* gram relu1_1 ... relu5_1: `transfer_measures.gram_reductions` on the default network (how many times closer to
  the style's Gram matrices than the photo).
* content: the content loss at relu4_2 against the photo (lower keeps more of it).

Original-colours pictures transfer the luma alone: their Gram and content terms are measured on the luma of the
result, the photo and the styles (each in all three channels).

Gatys outputs are not computed here (~14 min each at 512 px): pass --gatys_dir with the `ours_<pair>.png` files of
`experiments/studies/classic_comparison.py` at 512 px. A method passes a picture when its relu2_1 and relu3_1 reductions
are at least 0.8x the classic's and its coverage is at or above the bar. Writes, under --out_dir, one sheet per
picture (content | style | cast | AdaIN | WCT | Gatys | classic), results.json and results.md.
"""

from __future__ import annotations

import pathlib
import statistics
import time

import numpy as np
from absl import flags

from nst_jax import figures, metrics
from nst_jax.errors import NSTError
from nst_jax.io import image_io
from nst_jax.losses import color
from nst_jax.methods.adain import stylize as adain
from nst_jax.methods import transfer_measures
from nst_jax.models import adain_decoder
from nst_jax.weights import adain_decoders
from nst_jax.weights.store import resolve_weights

from experiments.studies import classic_comparison
from experiments import common

SIZE = 512
COVERAGE_BAR = 0.75
METHODS = ("cast", "adain", "wct", "gatys", "classic")
GRAM_RATIO_BAR = 0.8


def _setting(name: str) -> tuple[str, tuple[str, ...], float, tuple[float, ...] | None, str]:
  content, styles, setting = classic_comparison.PICTURES[name]
  scale = setting.get("style_scale", (1.0,))[0]
  blend = setting.get("style_blend") or None
  return content, styles, scale, blend, setting.get("preserve_colors", "none")


def color_cast(content: np.ndarray, styles: list[np.ndarray], blend) -> np.ndarray:
  """The look measure's negative control: the photo given the style's colour distribution (the blend's styles pooled
  in proportion), nothing else."""
  target = classic_comparison.palette_target(styles, blend or ())
  return np.clip(color.match_color_histogram(content, target, clip=True), 0, 1)


def run_adain(content, styles, blend, preserve, model) -> np.ndarray:
  return adain.stylize(content, styles, model=model, style_weights=blend, preserve_colors=preserve)


def run_wct(content, styles, blend, preserve, model, **options) -> np.ndarray:
  from nst_jax.methods.wct import stylize as wct  # pylint: disable=import-outside-toplevel
  return wct.stylize(content, styles, model=model, style_weights=blend, preserve_colors=preserve, **options)


def luma3(image: np.ndarray) -> np.ndarray:
  """The image's luma in all three channels."""
  return np.repeat(metrics.gray(image)[..., None], 3, axis=-1).astype(np.float32)


def measure(image, *, content, styles_at_scale, target, measurer, luminance: bool = False) -> dict[str, float]:
  """The module docstring's numbers; `luminance` (original-colours pictures, whose transfer is in the luma alone)
  measures the Gram and content terms on the luma of the result and the content (`target` then being the styles'
  luma Grams)."""
  out = {"coverage": metrics.style_coverage(image, content, styles_at_scale)}
  if luminance:
    image, content = luma3(image), luma3(content)
  out["content"] = measurer.content_loss(image, content)
  out.update({f"gram_{k}": v for k, v in transfer_measures.gram_reductions(measurer, image, content, target).items()})
  return out


def passes(ours: dict[str, float], classic: dict[str, float]) -> bool:
  return (ours["coverage"] >= COVERAGE_BAR and ours["gram_relu2_1"] >= GRAM_RATIO_BAR * classic["gram_relu2_1"]
          and ours["gram_relu3_1"] >= GRAM_RATIO_BAR * classic["gram_relu3_1"])


def run(settings: common.Settings, *, pictures: list[str] | None = None, methods: list[str] | None = None,
        gatys_dir: str | None = None, wct_decoders: str = "wct-decoders-hed-vgg16",
        adain_decoder_name: str = adain_decoder.DEFAULT_DECODER, wct_options: dict | None = None) -> dict:
  started = time.perf_counter()
  root = classic_comparison.find_reference(settings.data_dir)
  if root is None:
    print(f"[data] no reference/neural-style/ and artistic/ under {settings.data_dir!r}: nothing to do")
    return {"skipped": "no data"}
  methods = [m for m in METHODS if m in (methods or METHODS)]
  images, weights = common.Images(settings.data_dir), resolve_weights(settings.weights)
  measurer = transfer_measures.Measurer(weights)
  runners = {}
  if "adain" in methods:
    runners["adain"] = (run_adain, adain.make_model(weights, adain_decoders.resolve_decoder(adain_decoder_name)))
  if "wct" in methods:
    from nst_jax.cli.wct import resolve_decoders  # pylint: disable=import-outside-toplevel
    from nst_jax.methods.wct import stylize as wct  # pylint: disable=import-outside-toplevel
    wct_model = wct.make_model(weights, resolve_decoders(wct_decoders))
    runners["wct"] = (lambda *args: run_wct(*args, **(wct_options or {})), wct_model)
  out_dir = pathlib.Path(settings.out_dir)
  records = {}
  for name in pictures or list(classic_comparison.PICTURES):
    if name not in classic_comparison.PICTURES:
      raise NSTError(f"--pairs: unknown picture {name!r}; choose from {', '.join(classic_comparison.PICTURES)}")
    content_name, style_names, scale, blend, preserve = _setting(name)
    content = image_io.resize_long_side(images.content(content_name), settings.size)
    styles = [image_io.resize_long_side(images.style(s), max(16, round(settings.size * scale))) for s in style_names]
    luminance = preserve == "luminance"
    target = measurer.style_grams([luma3(s) for s in styles] if luminance else styles, blend)
    outputs, seconds = {}, {}
    if "cast" in methods:
      outputs["cast"] = color_cast(content, styles, blend) if preserve == "none" else content
    for method, (runner, model) in runners.items():
      runner(content, styles, blend, preserve, model)  # the first call compiles; time the second
      begin = time.perf_counter()
      outputs[method] = runner(content, styles, blend, preserve, model)
      seconds[method] = time.perf_counter() - begin
    if "gatys" in methods and gatys_dir and (pathlib.Path(gatys_dir) / f"ours_{name}.png").is_file():
      outputs["gatys"] = image_io.resize(image_io.load_image(pathlib.Path(gatys_dir) / f"ours_{name}.png"),
                                         *content.shape[:2])
    if "classic" in methods:
      outputs["classic"] = image_io.resize(image_io.load_image(root / f"{name}.png", what="reference"),
                                           *content.shape[:2])
    measured = {m: measure(img, content=content, styles_at_scale=styles, target=target, measurer=measurer,
                           luminance=luminance) for m, img in outputs.items()}
    for m, s in seconds.items():
      measured[m]["seconds"] = s
    if "classic" in measured:
      for m in measured:
        if m != "classic":
          measured[m]["passes"] = passes(measured[m], measured["classic"])
    records[name] = measured
    print(f"[{name}] " + " | ".join(f"{m} cov {v['coverage']:.2f} g2 {v['gram_relu2_1']:.2f} g3 "
                                     f"{v['gram_relu3_1']:.2f} c {v['content']:.3g}" for m, v in measured.items()),
          flush=True)
    style_cell = styles[0] if len(styles) == 1 else np.concatenate([image_io.resize(s, 256, 256) for s in styles], 1)
    cells = [content, style_cell] + [outputs.get(m) for m in methods]
    labels = [name, "+".join(style_names)] + [
        f"{m}: cov {measured[m]['coverage']:.2f} g3 {measured[m]['gram_relu3_1']:.1f}" if m in measured else f"{m}: -"
        for m in methods]
    image_io.save_image(out_dir / f"sheet_{name}.png", figures.contact_sheet([cells], [labels], cell_height=256))
    for m in runners:
      image_io.save_image(out_dir / m / f"{name}.png", outputs[m])
  summary = {}
  for m in methods:
    rows = [r[m] for r in records.values() if m in r]
    if rows:
      summary[m] = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "passes"}
      summary[m]["coverage_above_bar"] = sum(r["coverage"] >= COVERAGE_BAR for r in rows)
      summary[m]["passing"] = sum(r.get("passes", False) for r in rows)
      summary[m]["pictures"] = len(rows)
  sheet = figures.contact_sheet([[np.zeros((8, 8, 3))]], [["see sheet_<picture>.png"]], cell_height=32)
  record = common.write_outputs(settings, sheet, {"figure": "feed-forward comparison", "reference": str(root),
                                                  "methods": methods, "pictures": records, "summary": summary},
                                started=started)
  write_markdown(out_dir / "results.md", record)
  return record


def write_markdown(path: pathlib.Path, record: dict) -> None:
  lines = [f"# Feed-forward vs Gatys vs classic: {record['settings']['size']} px, {record['seconds_total']:.0f} s", "",
           f"coverage bar {COVERAGE_BAR}; a method passes when coverage >= the bar and its relu2_1 and relu3_1 Gram "
           f"reductions are >= {GRAM_RATIO_BAR}x the classic picture's.", ""]
  keys = ["coverage"] + [f"gram_{k}" for k in transfer_measures.GRAM_LAYERS] + ["content"]
  rows = []
  for name, measured in record["pictures"].items():
    for m, v in measured.items():
      rows.append([name, m] + [f"{v[k]:.3g}" for k in keys] + [f"{v['seconds']:.2f}" if "seconds" in v else "",
                                                               v.get("passes", "")])
  for m, v in record["summary"].items():
    rows.append(["**median**", m] + [f"{v[k]:.3g}" for k in keys] + [
        f"{v['seconds']:.2f}" if "seconds" in v else "", f"{v['passing']}/{v['pictures']} pass, "
                                                         f"{v['coverage_above_bar']} above the bar"])
  lines += common.markdown_table(["picture", "method"] + keys + ["s", "passes"], rows)
  common.write_markdown(path, lines)


if __name__ == "__main__":
  flags.DEFINE_list("pairs", [], "Reference pictures to run (file stems; default all 18).")
  flags.DEFINE_list("methods", list(METHODS), "Methods to run and measure.")
  flags.DEFINE_string("gatys_dir", None, "Folder with Gatys outputs ours_<picture>.png (classic_comparison.py).")
  flags.DEFINE_string("adain_decoder", adain_decoder.DEFAULT_DECODER, "AdaIN decoder file or name.")
  flags.DEFINE_string("wct_decoders", "wct-decoders-hed-vgg16", "WCT decoder file or name.")
  flags.DEFINE_list("wct_levels", [], "WCT levels (default: all the file has).")
  flags.DEFINE_list("wct_alpha", [], "WCT alpha: one value, or one per level of --wct_levels.")
  flags.DEFINE_float("wct_deep_scale", 1.0, "WCT: relu5_1 and relu4_1 on the image resized by this.")
  flags.DEFINE_list("wct_passes", [], "WCT passes: one per level of --wct_levels.")

  def wct_options() -> dict:
    f = flags.FLAGS
    options = {}
    if f.wct_levels:
      options["levels"] = tuple(f.wct_levels)
    if f.wct_alpha:
      alphas = [float(a) for a in f.wct_alpha]
      options["alpha"] = alphas[0] if len(alphas) == 1 else dict(zip(f.wct_levels, alphas))
    if f.wct_passes:
      options["passes"] = dict(zip(f.wct_levels, (int(n) for n in f.wct_passes)))
    if f.wct_deep_scale != 1.0:
      options["scales"] = {"relu5_1": f.wct_deep_scale, "relu4_1": f.wct_deep_scale}
    return options

  common.app_run(lambda settings: run(settings, pictures=flags.FLAGS.pairs or None, methods=flags.FLAGS.methods,
                                      gatys_dir=flags.FLAGS.gatys_dir, wct_decoders=flags.FLAGS.wct_decoders,
                                      adain_decoder_name=flags.FLAGS.adain_decoder,
                                      wct_options=wct_options()),
                 __file__, quick=dict(size=256, iterations=0), full=dict(size=SIZE, iterations=0))
