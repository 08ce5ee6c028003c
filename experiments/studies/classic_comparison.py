"""Ours next to the classic Lua neural-style (ImageNet VGG19) on every shared reference picture.

Run (from the repository root; needs ../shared/data/reference/neural-style/, skips cleanly without it):
  python -m experiments.studies.classic_comparison --quick --pairs golden_gate_starry,tubingen_scream   # 256 px
  python -m experiments.studies.classic_comparison --quick   # all 18 reference pictures at 256 px (~65 min, 2 cores)
  python -m experiments.studies.classic_comparison           # 512 px, the stylize defaults (~13 min per picture)
  python -m experiments.studies.classic_comparison --quick --set style_loss=swd --set tv_weight=1 --out_dir outputs/x
      # any StylizeConfig field: the variants of the study in docs/gatys.md

For each picture of `../shared/data/reference/neural-style/` (its README lists the settings: defaults, style
scale 0.5/1/2, two-style blends, original colours) ours is made with the stylize defaults plus the picture's own
setting (`--style_scale`, `--style_blend`, `--preserve_colors luminance`) and measured next to the reference,
which is resized to our output, by numbers that follow what the eye sees rather than the loss optimised:

* flat: `metrics.flat_fraction`, the share of 16-px blocks (at 512 px; 8 px at 256) whose high-pass energy is
  below a quarter of the style's median block (the style at the size it was transferred at, the first style of a
  blend): large flat, un-styled areas. Lower is better.
* palette: `metrics.palette_distance`, sliced Wasserstein distance between the output's and the style's colours
  (a blend's styles pooled in its proportions; against the content for original colours). Lower is better.
* ssim: SSIM of the gray output to the gray content (how much of the photo is kept; for information).

A picture passes when ours is within 10% of the reference's (or better) on flat (plus 0.01, for values near 0)
and on palette. Writes outputs/classic_comparison/sheet.png (content | style | ours | classic), results.json and
results.md.

Expected (--quick, the defaults at the time of writing): see docs/gatys.md, which records what each
variant measured and what the sheets show.
"""

from __future__ import annotations

import dataclasses
import pathlib
import statistics
import time
import typing

import numpy as np
from absl import flags

from nst_jax import figures, metrics
from nst_jax.errors import NSTError
from nst_jax.io import image_io
from nst_jax.objective.config import StylizeConfig
from nst_jax.weights.store import resolve_weights

from experiments import common

QUICK = dict(size=256, iterations=StylizeConfig.iterations)
FULL = dict(size=512, iterations=StylizeConfig.iterations)
REFERENCE_SIZE = 512

# reference file stem -> (content, styles, StylizeConfig overrides); the settings of the reference folder's README.
PICTURES: dict[str, tuple[str, tuple[str, ...], dict]] = {
    "golden_gate_scream": ("golden_gate", ("the_scream",), {}),
    "golden_gate_seated": ("golden_gate", ("seated-nude",), {}),
    "golden_gate_starry": ("golden_gate", ("starry_night",), {}),
    "golden_gate_starry_scale05": ("golden_gate", ("starry_night",), {"style_scale": (0.5,)}),
    "golden_gate_starry_scale1": ("golden_gate", ("starry_night",), {"style_scale": (1.0,)}),
    "golden_gate_starry_scale2": ("golden_gate", ("starry_night",), {"style_scale": (2.0,)}),
    "golden_gate_starry_scream_3_7": ("golden_gate", ("starry_night", "the_scream"), {"style_blend": (3.0, 7.0)}),
    "golden_gate_starry_scream_5_5": ("golden_gate", ("starry_night", "the_scream"), {"style_blend": (5.0, 5.0)}),
    "golden_gate_starry_scream_7_3": ("golden_gate", ("starry_night", "the_scream"), {"style_blend": (7.0, 3.0)}),
    "tubingen_scream": ("tubingen", ("the_scream",), {}),
    "tubingen_seated_nude": ("tubingen", ("seated-nude",), {}),
    "tubingen_shipwreck": ("tubingen", ("shipwreck",), {}),
    "tubingen_starry": ("tubingen", ("starry_night",), {}),
    "tubingen_starry_scream": ("tubingen", ("starry_night", "the_scream"), {"style_blend": (1.0, 1.0)}),
    "original_colors__tubingen_scream": ("tubingen", ("the_scream",), {"preserve_colors": "luminance"}),
    "original_colors__tubingen_seated_nude": ("tubingen", ("seated-nude",), {"preserve_colors": "luminance"}),
    "original_colors__tubingen_shipwreck": ("tubingen", ("shipwreck",), {"preserve_colors": "luminance"}),
    "original_colors__tubingen_starry": ("tubingen", ("starry_night",), {"preserve_colors": "luminance"}),
}
METRICS = ("flat", "palette", "ssim")


def find_reference(data_dir: str) -> pathlib.Path | None:
  path = pathlib.Path(data_dir)
  for base in ([path] if path.is_absolute() else [pathlib.Path.cwd() / path, common.REPO_ROOT / path]):
    if (base / "reference" / "neural-style").is_dir() and (base / "artistic").is_dir():
      return (base / "reference" / "neural-style").resolve()
  return None


def parse_overrides(items: list[str]) -> dict[str, typing.Any]:
  """["field=value", ...] -> StylizeConfig overrides, each value parsed as its field's type (tuples from commas)."""
  fields = {f.name: f for f in dataclasses.fields(StylizeConfig)}
  out = {}
  for item in items:
    name, sep, raw = item.partition("=")
    if not sep or name not in fields:
      raise NSTError(f"--set {item!r}: expected field=value with a StylizeConfig field, e.g. style_weight=30")
    default = getattr(StylizeConfig(), name)
    try:
      if isinstance(default, bool):
        value = raw.lower() in ("1", "true", "yes")
      elif isinstance(default, tuple):
        value = tuple(raw.split(",")) if not default or isinstance(default[0], str) else tuple(
            type(default[0])(v) for v in raw.split(","))
      elif isinstance(default, dict) or name in ("style_layer_weights", "optimizer_options"):
        value = {k: float(v) for k, v in (kv.split(":") for kv in raw.split(","))}
      elif default is None:  # optional fields: parsed as the type they hold (`float | None`, `str | None`)
        value = float(raw) if str(fields[name].type).startswith("float") else raw
      else:
        value = type(default)(raw)
    except ValueError as e:
      raise NSTError(f"--set {item!r}: {e}") from None
    out[name] = value
  return out


def palette_target(styles: list[np.ndarray], blend: tuple[float, ...], *, pixels: int = 200_000,
                   seed: int = 0) -> np.ndarray:
  """The styles' pixels pooled in the blend's proportions, (N, 1, 3)."""
  weights = np.asarray(blend or (1.0,) * len(styles), np.float64)
  weights = weights / weights.sum()
  rng = np.random.default_rng(seed)
  parts = [rng.choice(s.reshape(-1, 3), size=int(round(pixels * w)), replace=True)
           for s, w in zip(styles, weights) if w > 0]
  return np.concatenate(parts)[:, None, :]


def measure(image: np.ndarray, *, content: np.ndarray, styles: list[np.ndarray], overrides: dict,
            size: int) -> dict[str, float]:
  """The module docstring's numbers for one image (already at the content's measuring size)."""
  block = max(4, round(16 * size / REFERENCE_SIZE))
  scale = overrides.get("style_scale", (1.0,))[0]
  style_at_scale = image_io.resize_long_side(styles[0], max(16, round(size * scale)))
  if overrides.get("preserve_colors") == "luminance":
    palette = metrics.palette_distance(image, content)
  else:
    palette = metrics.palette_distance(image, palette_target(
        [image_io.resize_long_side(s, size) for s in styles], overrides.get("style_blend", ())))
  return {"flat": metrics.flat_fraction(image, style_at_scale, block=block), "palette": palette,
          "ssim": metrics.ssim(metrics.gray(image), metrics.gray(content))}


def passes(ours: dict[str, float], reference: dict[str, float]) -> bool:
  return ours["flat"] <= 1.1 * reference["flat"] + 0.01 and ours["palette"] <= 1.1 * reference["palette"]


def run(settings: common.Settings, *, pictures: list[str] | None = None,
        overrides: dict[str, typing.Any] | None = None) -> dict:
  started = time.perf_counter()
  root = find_reference(settings.data_dir)
  if root is None:
    print(f"[data] no reference/neural-style/ and artistic/ under {settings.data_dir!r}: nothing to do")
    return {"skipped": "no data"}
  overrides = overrides or {}
  images, weights = common.Images(settings.data_dir), resolve_weights(settings.weights)
  rows, labels, records = [], [], {}
  for name in pictures or list(PICTURES):
    if name not in PICTURES:
      raise NSTError(f"--pairs: unknown picture {name!r}; choose from {', '.join(PICTURES)}")
    content_name, style_names, setting = PICTURES[name]
    content = images.content(content_name)
    styles = [images.style(s) for s in style_names]
    config = StylizeConfig(size=settings.size, iterations=settings.iterations, log_every=100,
                           **{**overrides, **setting})
    result, record = common.run_stylize(name, content=content, styles=styles, weights=weights, config=config,
                                        progress=not settings.quick)
    ours = result.image
    small = image_io.resize(content, *ours.shape[:2])
    reference = image_io.resize(image_io.load_image(root / f"{name}.png", what="reference"), *ours.shape[:2])
    measured = {who: measure(image, content=small, styles=styles, overrides=setting, size=settings.size)
                for who, image in (("ours", ours), ("classic", reference))}
    ok = passes(measured["ours"], measured["classic"])
    records[name] = {**measured, "passes": ok, "setting": setting, **record, "config": dataclasses.asdict(config)}
    print(f"[{name}] " + " | ".join(f"{who} " + " ".join(f"{m} {v:.3f}" for m, v in values.items())
                                     for who, values in measured.items()) + f" | passes {ok}", flush=True)
    image_io.save_image(pathlib.Path(settings.out_dir) / f"ours_{name}.png", ours)
    style_cell = styles[0] if len(styles) == 1 else np.concatenate(
        [image_io.resize(s, 256, 256) for s in styles], axis=1)
    rows.append([small, style_cell, ours, reference])
    labels.append([name, "+".join(style_names),
                   f"ours: flat {measured['ours']['flat']:.2f} pal {measured['ours']['palette']:.3f}",
                   f"classic: flat {measured['classic']['flat']:.2f} pal {measured['classic']['palette']:.3f}"])
  summary = {who: {m: statistics.median(r[who][m] for r in records.values()) for m in METRICS}
             for who in ("ours", "classic")}
  summary["passing"] = sum(r["passes"] for r in records.values())
  summary["pictures"] = len(records)
  sheet = figures.contact_sheet(rows, labels, cell_height=min(200, settings.size))
  record = common.write_outputs(settings, sheet, {
      "figure": "classic neural-style comparison", "reference": str(root), "overrides": overrides,
      "pictures": records, "summary": summary}, started=started)
  write_markdown(pathlib.Path(settings.out_dir) / "results.md", record)
  return record


def write_markdown(path: pathlib.Path, record: dict) -> None:
  s = record["settings"]
  lines = [f"# Ours vs classic neural-style: {s['size']} px, {s['iterations']} iterations, overrides "
           f"{record['overrides'] or 'none'}, {record['seconds_total']:.0f} s total", ""]
  numbers = lambda r: [f"{r[who][m]:{spec}}" for m, spec in (("flat", ".3f"), ("palette", ".4f"), ("ssim", ".3f"))
                       for who in ("ours", "classic")]
  m = record["summary"]
  rows = [[name, f"{r['seconds']:.0f}", *numbers(r), r["passes"]] for name, r in record["pictures"].items()]
  rows.append(["**median**", "", *numbers(m), f"{m['passing']}/{m['pictures']}"])
  lines += common.markdown_table(["picture", "s", "flat ours", "flat classic", "palette ours", "palette classic",
                                  "SSIM ours", "SSIM classic", "passes"], rows)
  common.write_markdown(path, lines)


if __name__ == "__main__":
  flags.DEFINE_list("pairs", [], "Reference pictures to run (file stems; default all 18).")
  flags.DEFINE_multi_string("set", [], "A StylizeConfig field for every run, field=value (repeatable).")
  common.app_run(lambda settings: run(settings, pictures=flags.FLAGS.pairs or None,
                                      overrides=parse_overrides(flags.FLAGS.set)),
                 __file__, quick=QUICK, full=FULL)
