"""Plumbing shared by the figure scripts in experiments/: flags and settings, the test images (with a fallback to
the generated demo images), timed runs, Gram distances inside a region, and atomic JSON/PNG output.

Each script defines `run(settings) -> dict` (the library-level entry point, used by tests/experiments_test.py)
and calls `common.app_run(run, __file__, quick=..., full=...)` under `if __name__ == "__main__"`. Flags are
defined only then, so importing a script (or this module) has no side effects on absl's global flags.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from absl import app, flags

from nst_jax import demo, losses
from nst_jax.io import atomic, image_io
from nst_jax.losses import guidance
from nst_jax.methods import gatys
from nst_jax.engines.optimize import StylizeResult
from nst_jax.objective.config import StylizeConfig
from nst_jax.models import vgg
from nst_jax.errors import NSTError, exit_on_error
from nst_jax.weights.format import VGGWeights

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = "../shared/data"
CONTENTS = ("tubingen", "golden_gate")
STYLES = ("starry_night", "the_scream", "shipwreck", "seated-nude", "picasso_selfport1907")


@dataclasses.dataclass(frozen=True)
class Settings:
  """What every script needs; `quick`/`full` defaults fill size and iterations when the flags leave them unset."""

  out_dir: pathlib.Path
  size: int
  iterations: int
  quick: bool = False
  weights: str = "hed-vgg16"
  data_dir: str = DEFAULT_DATA_DIR  # "" = use the generated demo images

  @property
  def cell_height(self) -> int:
    """Sheet cell height: small outputs are shown enlarged so that their texture stays visible, large ones shrunk."""
    return int(np.clip(self.size, 160, 384))


# ----------------------------------------------------------------------------------------------------- images


class Images:
  """The test photos and paintings of ../shared/data/artistic, or the demo images when that folder is absent.

  Demo fallback: every content name maps to matplotlib's Grace Hopper photo, and the five paintings map to five
  generated styles (swirl and mosaic paintings with different seeds and stroke sizes)."""

  def __init__(self, data_dir: str):
    self.root = _find_artistic(data_dir)
    self._cache: dict[str, np.ndarray] = {}
    if self.root is None:
      why = "--data_dir is empty" if not data_dir else f"{data_dir!r} has no artistic/ folder"
      print(f"[data] {why}: using the generated demo images (content: matplotlib's grace_hopper.jpg; styles: "
            f"swirl/mosaic paintings) instead of the paintings")
    else:
      print(f"[data] using the test images in {self.root}")

  @property
  def source(self) -> str:
    return str(self.root) if self.root is not None else "demo (nst_jax.demo)"

  def content(self, name: str = "tubingen") -> np.ndarray:
    return self._get("content", name)

  def style(self, name: str) -> np.ndarray:
    return self._get("style", name)

  def label(self, name: str) -> str:
    """How an image is called on sheets: its file name, or that of its demo stand-in."""
    if self.root is not None:
      return name
    return "grace_hopper (demo)" if name in CONTENTS else _DEMO_STYLES[name][0]

  def _get(self, kind: str, name: str) -> np.ndarray:
    key = f"{kind}/{name}"
    if key not in self._cache:
      if self.root is None:
        image = demo.default_content() if kind == "content" else _DEMO_STYLES[name][1]()
      else:
        image = image_io.load_image(self.root / kind / f"{name}.jpg", what=f"{kind} image")
      # Nothing here is used above 1024 px (full mode: 512 px, style scale <= 2); smaller arrays resize faster.
      self._cache[key] = image_io.resize_long_side(image, 1024) if max(image.shape[:2]) > 1024 else image
    return self._cache[key]


_DEMO_STYLES: dict[str, tuple[str, Callable[[], np.ndarray]]] = {
    "starry_night": ("swirl (demo)", lambda: demo.swirl_painting(256, seed=0)),
    "the_scream": ("mosaic (demo)", lambda: demo.mosaic_painting(256, seed=0)),
    "shipwreck": ("swirl-2 (demo)", lambda: demo.swirl_painting(256, seed=3)),
    "seated-nude": ("coarse mosaic (demo)", lambda: demo.mosaic_painting(256, seed=1, cell=40.0)),
    "picasso_selfport1907": ("fine mosaic (demo)", lambda: demo.mosaic_painting(256, seed=2, cell=8.0)),
}


def _find_artistic(data_dir: str) -> pathlib.Path | None:
  """`data_dir`/artistic, relative paths tried against the working directory and then the repository root."""
  if not data_dir:
    return None
  path = pathlib.Path(data_dir)
  for base in ([path] if path.is_absolute() else [pathlib.Path.cwd() / path, REPO_ROOT / path]):
    if (base / "artistic").is_dir():
      return (base / "artistic").resolve()
  if data_dir != DEFAULT_DATA_DIR:  # asked for explicitly: a typo must not silently switch to the demo images
    raise NSTError(f"--data_dir {data_dir!r} has no artistic/ folder; pass --data_dir '' for the demo images")
  return None


# -------------------------------------------------------------------------------------------------- running


def run_stylize(name: str, *, weights: VGGWeights, config: StylizeConfig, progress: bool = False,
                **kwargs) -> tuple[StylizeResult, dict[str, Any]]:
  """`gatys.stylize(...)` timed; returns the result and a JSON-ready record (terms, time), and prints one line."""
  start = time.perf_counter()
  result = gatys.stylize(weights=weights, config=config, progress=progress, **kwargs)
  seconds = time.perf_counter() - start
  record = {"initial_terms": result.initial_terms, "final_terms": result.final_terms,
            "style_reduction": style_reduction(result), "seconds": round(seconds, 2)}
  print(f"  {name}: {seconds:.1f}s  style {result.initial_terms.get('style', 0):.4g} -> "
        f"{result.final_terms.get('style', 0):.4g}  content {result.final_terms.get('content', 0):.4g}")
  return result, record


def style_reduction(result: StylizeResult) -> float | None:
  """Initial / final style term (how many times the style loss fell), None when there is no style term."""
  start, end = result.initial_terms.get("style"), result.final_terms.get("style")
  if start is None or end is None or end <= 0:
    return None
  return start / end


def region_gram_distances(weights: VGGWeights, image: np.ndarray, mask: np.ndarray,
                          styles: Sequence[np.ndarray], *, style_size: int | None = None,
                          layers: Sequence[str] = ("relu2_1", "relu3_1")) -> list[float]:
  """Style loss (normalised Gram distance, summed over `layers`) between the output's guided Gram matrix inside
  `mask` and each style's Gram matrix; styles are resized to `style_size` (default: the output's long side)."""
  layers = tuple(layers)
  model = vgg.VGG(weights.arch, layers, pooling="avg")
  params = vgg.params_for(weights.arch, weights.params, layers)
  feats = lambda img: model.apply({"params": params}, weights.preprocessing.apply(jnp.asarray(img))[None])
  out = feats(image)
  mask = guidance.resize_mask(np.asarray(mask, np.float32), *image.shape[:2])
  masks = guidance.masks_at_layers(weights.arch, jnp.asarray(mask)[None], layers, pooling="avg")
  size = style_size or max(image.shape[:2])
  distances = []
  for style in styles:
    target = feats(image_io.resize_long_side(style, size))
    distances.append(sum(float(losses.style_layer_loss(gram=guidance.guided_gram(out[l], masks[l])[0],
                                                       target_gram=losses.gram_matrix(target[l])[0]))
                         for l in layers))
  return distances


def soft_split(shape: tuple[int, int], *, at: float, axis: int = 0, softness: float = 0.06) -> np.ndarray:
  """(H, W) mask in [0, 1] that is 1 before the fraction `at` along `axis` (0: top part, 1: left part) and 0
  after it, with a logistic ramp `softness` (fraction of that side) wide."""
  n = shape[axis]
  t = (np.arange(n) + 0.5) / n
  ramp = 1.0 / (1.0 + np.exp((t - at) / max(softness, 1e-6) * 4.0))
  return np.asarray(ramp[:, None] * np.ones((1, shape[1])) if axis == 0 else
                    np.ones((shape[0], 1)) * ramp[None, :], np.float32)


# --------------------------------------------------------------------------------------------------- output


def short(value: float) -> str:
  """Compact number for sheet labels: 0.123, 12.3, 1.2k, 234k, 1.2M."""
  if value is None or not math.isfinite(value):
    return "inf"
  for limit, suffix in ((1e6, "M"), (1e3, "k")):
    if abs(value) >= limit:
      return f"{value / limit:.{1 if abs(value) < 10 * limit else 0}f}{suffix}"
  return f"{value:.3g}"


def to_jsonable(value: Any) -> Any:
  """numpy scalars/arrays -> Python; NaN/inf -> None (strict JSON); paths -> str."""
  if isinstance(value, Mapping):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if isinstance(value, np.ndarray):
    return to_jsonable(value.tolist())
  if isinstance(value, (np.floating, float)):
    return float(value) if math.isfinite(value) else None
  if isinstance(value, np.integer):
    return int(value)
  if isinstance(value, (np.bool_,)):
    return bool(value)
  if isinstance(value, pathlib.Path):
    return str(value)
  return value


def write_json(path: str | os.PathLike, data: Mapping[str, Any]) -> pathlib.Path:
  """Writes `data` as indented strict JSON (NaN/inf as null), atomically."""
  return atomic.write_json(path, to_jsonable(data), sort_keys=False, strict=True)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
  """Lines of a Markdown table: the header, its rule and one line per row (cells already formatted)."""
  return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
      "| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def write_markdown(path: str | os.PathLike, lines: Sequence[str]) -> None:
  """Writes the lines as one Markdown file, atomically, and says so."""
  with atomic.atomic_write(path, "w") as out:
    out.write("\n".join(lines) + "\n")
  print(f"wrote {path}")


def save_figure(fig, path: str | os.PathLike) -> pathlib.Path:
  """Saves a matplotlib figure as PNG, atomically."""
  return atomic.write_figure(fig, path, dpi=110, bbox_inches="tight")


def write_outputs(settings: Settings, sheet: np.ndarray, record: Mapping[str, Any], *,
                  started: float) -> dict[str, Any]:
  """Writes `<out_dir>/sheet.png` and `<out_dir>/results.json` (with the settings, total time and load average
  added to `record`) and returns the full record."""
  out = pathlib.Path(settings.out_dir)
  sheet_path = image_io.save_image(out / "sheet.png", sheet)
  if {"settings", "seconds_total", "machine", "files"} & set(record):
    raise ValueError("record keys clash with the ones write_outputs adds")
  full = {"settings": dataclasses.asdict(settings), **record,
          "seconds_total": round(time.perf_counter() - started, 2),
          "machine": {"cpus": os.cpu_count(), "load_average_at_end": list(os.getloadavg())},
          "files": {"sheet": str(sheet_path), "json": str(out / "results.json")}}
  write_json(out / "results.json", full)
  print(f"wrote {sheet_path} and {out / 'results.json'}")
  return full


# ------------------------------------------------------------------------------------------------ command line


def define_flags(name: str, *, quick: Mapping[str, int], full: Mapping[str, int]) -> None:
  flags.DEFINE_bool("quick", False, f"Small and fast (size {quick['size']}, {quick['iterations']} iterations; "
                    "under 5 minutes on a 2-core CPU) instead of the paper-like full run "
                    f"(size {full['size']}, {full['iterations']} iterations).")
  flags.DEFINE_string("out_dir", f"outputs/{name}", "Folder for sheet.png and results.json.")
  flags.DEFINE_integer("size", None, "Long side of the outputs in pixels (default: by --quick).")
  flags.DEFINE_integer("iterations", None, "Optimizer iterations per run (default: by --quick).")
  flags.DEFINE_string("weights", "hed-vgg16", "Weights name or .npz path.")
  flags.DEFINE_string("data_dir", DEFAULT_DATA_DIR, "Folder holding artistic/{content,style}/*.jpg; when the "
                      "default is absent (or this is ''), the generated demo images are used.")


def settings_from_flags(*, quick: Mapping[str, int], full: Mapping[str, int]) -> Settings:
  f = flags.FLAGS
  defaults = quick if f.quick else full
  return Settings(out_dir=pathlib.Path(f.out_dir), size=f.size or defaults["size"],
                  iterations=f.iterations or defaults["iterations"], quick=f.quick, weights=f.weights,
                  data_dir=f.data_dir)


def app_run(run: Callable[[Settings], dict], script: str, *, quick: Mapping[str, int],
            full: Mapping[str, int]) -> None:
  """Defines the common flags and runs `run(settings)` under absl; an NSTError ends in one line, exit status 2."""
  define_flags(pathlib.Path(script).stem, quick=quick, full=full)

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    # JAX's backend probing ("Unable to initialize backend 'tpu'") is logged at INFO, which absl would print.
    logging.getLogger("jax").setLevel(logging.WARNING)
    with exit_on_error():
      run(settings_from_flags(quick=quick, full=full))

  app.run(main)
