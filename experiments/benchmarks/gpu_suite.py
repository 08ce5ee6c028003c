"""GPU suite: one command that measures nst_jax on a GPU machine in under 10 minutes.

On the CPU machine, once (writes the git-ignored gpu_bundle/: an fp16 copy of the default weights and the few
images the suite needs, ~33 MB; the GPU machine gets the repository's working tree plus this folder, no network):
  python -m experiments.benchmarks.gpu_suite --prepare
On the GPU machine (JAX with CUDA, flax, optax, tqdm; Pillow, matplotlib and torch are optional):
  python -m experiments.benchmarks.gpu_suite --out outputs/gpu_suite
In CI, the same code paths on CPU at tiny sizes in under a minute (2 simulated devices for the sharded part):
  XLA_FLAGS=--xla_force_host_platform_device_count=2 \
      python -m experiments.benchmarks.gpu_suite --tiny --out /tmp/gpu_tiny

Sections (each in its own process on the GPU, so that one's peak memory or failure does not touch the next):
  gatys     one L-BFGS iteration (and evaluations per iteration) at 1080p and 4K, fp32 and bf16; the PyTorch
            reference's iteration beside it when torch is installed (--tiny: on the first row only)
  tiled     a few L-BFGS iterations of the tiled 4K loss (nst_jax.highres) and the device's peak memory
  sharded   the tiled loss over 2 devices against 1 device (skipped with fewer than 2 devices)
  adain     latency of one AdaIN stylisation at 512x512, 1080p and 4K (4K in thumbnail-normalised tiles)
  photoreal one photoreal pair (with segmentation maps) at 700 px, a fixed number of iterations per stage
Expected on an H200: every section finishes; Gatys iterations in milliseconds to tenths of a second; the whole run
in about 5 minutes, most of it compilation. Writes OUT.json (every number, the machine) and OUT.md (tables).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time
from typing import Any

import jax
import numpy as np
from absl import flags

from nst_jax import demo
from nst_jax.cli.command import Command, main
from nst_jax.errors import NSTError
from nst_jax.io import atomic

# Run with -m from the repository root, Python finds nst_jax and experiments there: no install on the GPU machine.
REPO = pathlib.Path(__file__).resolve().parents[2]

BUNDLE = REPO / "gpu_bundle"
SECTIONS = ("gatys", "tiled", "sharded", "adain", "photoreal")
FULL = {"gatys": [(1080, 1920), (2160, 3840)], "tiled": (2160, 3840), "tile": 1024, "tiled_iterations": 3,
        "adain": [(512, 512), (1080, 1920), (2160, 3840)], "adain_max_pixels": 2048 * 1024, "photoreal": 700,
        "photoreal_iterations": 50, "steps": 3, "repeats": 3}
TINY = {"gatys": [(24, 32), (32, 48)], "tiled": (32, 48), "tile": 16, "tiled_iterations": 2,
        "adain": [(16, 16), (24, 32), (32, 48)], "adain_max_pixels": 24 * 32, "photoreal": 32,
        "photoreal_iterations": 2, "steps": 2, "repeats": 1}
# --tiny: the first block of VGG only, and Adam outside the Gatys section, so that compilation (most of a tiny run)
# takes seconds; the code paths are the same.
SHALLOW = {"content_layers": ("relu1_2",), "style_layers": ("relu1_1", "relu1_2")}
TINY_OPTIMIZER = {"optimizer": "adam"}


# ----------------------------------------------------------------------------------------------------------------
# Inputs: the bundle, or (CI, no bundle) the default weights and generated images


def prepare(bundle: pathlib.Path, data_dir: pathlib.Path) -> None:
  """Writes the bundle: fp16 weights and uint8 images (numpy only, so the GPU machine needs no Pillow)."""
  from nst_jax.io import image_io  # pylint: disable=import-outside-toplevel
  from nst_jax.losses import segmentation  # pylint: disable=import-outside-toplevel
  from nst_jax.weights.format import save_weights  # pylint: disable=import-outside-toplevel
  from nst_jax.weights.store import resolve_weights  # pylint: disable=import-outside-toplevel
  save_weights(bundle / "hed-vgg16.npz", resolve_weights("hed-vgg16"), dtype="float16")
  images = {"content": image_io.resize_long_side(demo.default_content(), 1024), "style": demo.swirl_painting(1024)}
  pair = data_dir / "photoreal"
  if (pair / "input" / "in1.png").is_file():  # the paper's pair 1; else a generated stand-in without maps
    content = image_io.resize_long_side(image_io.load_image(pair / "input" / "in1.png"), 700)
    style = image_io.resize_long_side(image_io.load_image(pair / "style" / "tar1.png"), 700)
    images.update(photo_content=content, photo_style=style)
    for name, path, shape in (("content_seg", pair / "segmentation" / "in1.png", content.shape),
                              ("style_seg", pair / "segmentation" / "tar1.png", style.shape)):
      images[name] = nearest(segmentation.load_map(path, what=name), shape[:2])  # flat colours stay flat
  with atomic.atomic_write(bundle / "images.npz") as f:
    np.savez_compressed(f, **{k: np.round(np.asarray(v) * 255).astype(np.uint8) for k, v in images.items()})
  size = sum(p.stat().st_size for p in bundle.iterdir()) / 2**20
  print(f"wrote {bundle} ({size:.0f} MB): carry it to the GPU machine with the repository")


def nearest(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  """Nearest-neighbour resize (maps of flat colours): exactly the photo's shape, so nothing resizes them later."""
  rows = (np.arange(shape[0]) + 0.5) * image.shape[0] / shape[0]
  cols = (np.arange(shape[1]) + 0.5) * image.shape[1] / shape[1]
  return image[rows.astype(int)][:, cols.astype(int)]


def resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  """Lanczos resize on the device (no Pillow on the GPU machine)."""
  return np.clip(np.asarray(jax.image.resize(image, (*shape, image.shape[-1]), "lanczos3")), 0, 1).astype(np.float32)


def inputs(tiny: bool) -> dict[str, Any]:
  """Weights (as a name or path for the harness) and float images in [0, 1]."""
  if (BUNDLE / "images.npz").is_file():
    with np.load(BUNDLE / "images.npz") as npz:
      images = {k: npz[k].astype(np.float32) / 255 for k in npz.files}
    return {"weights": str(BUNDLE / "hed-vgg16.npz"), **images}
  # No bundle (CI): generated images, and the fetched default weights (random ones if even those are absent).
  return {"weights": "auto", "content": demo.mosaic_painting(256, seed=5), "style": demo.swirl_painting(256)}


# ----------------------------------------------------------------------------------------------------------------
# Sections


def section_gatys(sizes: dict, tiny: bool, data: dict) -> list[dict]:
  from experiments.benchmarks.benchmarking import jax_timing, problem  # pylint: disable=import-outside-toplevel
  rows = []
  for precision in ("fp32", "bf16"):
    settings = problem.BenchmarkSettings(weights=data["weights"], precision=precision, steps=sizes["steps"],
                                         step_repeats=sizes["repeats"], warmup=1, **(SHALLOW if tiny else {}))
    weights = problem.load_benchmark_weights(settings)
    for shape in sizes["gatys"]:
      prob = problem.build_problem(settings, shape, weights=weights,
                                   images=(resize(data["content"], shape), resize(data["style"], shape)))
      row = {"shape": list(shape), "precision": precision,
             "jax": jax_timing.time_jax_steps(prob, gpu=jax.default_backend() == "gpu")}
      if _has_torch() and tiny and rows:
        row["torch"] = {"skipped": "--tiny times PyTorch on the first row only"}  # the path is the same
      elif _has_torch():
        from experiments.benchmarks.benchmarking import torch_reference  # pylint: disable=import-outside-toplevel
        row["torch"] = torch_reference.time_torch_steps(torch_reference.TorchGatys(prob), settings)
      rows.append(row)
  return rows


def _tiled_run(sizes: dict, tiny: bool, data: dict, devices: int) -> dict:
  # pylint: disable=import-outside-toplevel (the sections import what they use, in their own process on the GPU)
  from nst_jax.highres import distributed, highres_config, pyramid, scale_problem
  from nst_jax.objective.config import StylizeConfig, run_settings  # pylint: disable=import-outside-toplevel
  from nst_jax.objective.plan import resolve_plan  # pylint: disable=import-outside-toplevel
  from nst_jax.weights.store import resolve_weights  # pylint: disable=import-outside-toplevel
  from experiments.benchmarks.benchmarking import problem  # pylint: disable=import-outside-toplevel
  shape = sizes["tiled"]
  weights = (resolve_weights(data["weights"]) if data["weights"] != "auto"
             else problem.load_benchmark_weights(problem.BenchmarkSettings())[0])
  config = StylizeConfig(size=max(shape), iterations=sizes["tiled_iterations"], log_every=sizes["tiled_iterations"],
                         stall_rtol=None, **({**SHALLOW, **TINY_OPTIMIZER} if tiny else {}))
  hr = highres_config.HighresConfig(tile_size=sizes["tile"])
  mesh = distributed.make_mesh(jax.devices()[:devices])
  content, style = resize(data["content"], shape), resize(data["style"], shape)
  t0 = time.perf_counter()
  prob = scale_problem.build_scale_problem(content=content, styles=[style], weights=weights,
                                           plan=resolve_plan(config, arch=weights.arch), shape=shape, tile=sizes["tile"], hr=hr, mesh=mesh)
  targets_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  result = pyramid.optimize_scale(prob, content, run=run_settings(config), mesh=mesh, progress=False)
  stats = jax.devices()[0].memory_stats() or {}
  return {"shape": list(shape), "devices": devices, "tiles": prob.grid.num_tiles, "window": list(prob.grid.window),
          "iterations": len(result.loss_history), "optimizer": config.optimizer, "targets_s": targets_s,
          "optimise_s_incl_compile": time.perf_counter() - t0, "final_terms": result.final_terms,
          "loss_history": result.loss_history.tolist(), "peak_device_bytes": stats.get("peak_bytes_in_use")}


def section_tiled(sizes: dict, tiny: bool, data: dict) -> dict:
  return _tiled_run(sizes, tiny, data, devices=1)


def section_sharded(sizes: dict, tiny: bool, data: dict) -> dict:
  if len(jax.devices()) < 2:
    return {"skipped": f"needs 2 devices, JAX sees {len(jax.devices())}"}
  one, two = _tiled_run(sizes, tiny, data, devices=1), _tiled_run(sizes, tiny, data, devices=2)
  diff = max(abs(a - b) / abs(a) for a, b in zip(one["loss_history"], two["loss_history"]))
  return {"one_device": one, "two_devices": two, "max_loss_rel_diff": diff}


def section_adain(sizes: dict, tiny: bool, data: dict) -> list[dict]:
  from experiments.benchmarks.benchmarking import jax_timing, problem  # pylint: disable=import-outside-toplevel
  settings = problem.BenchmarkSettings(weights=data["weights"], repeats=sizes["repeats"])
  return [jax_timing.time_adain(settings, shape, max_pixels=sizes["adain_max_pixels"],
                                images=(resize(data["content"], shape), resize(data["style"], shape)))
          for shape in sizes["adain"]]


def section_photoreal(sizes: dict, tiny: bool, data: dict) -> dict:
  from nst_jax.methods import photoreal  # pylint: disable=import-outside-toplevel
  from nst_jax.weights.store import resolve_weights  # pylint: disable=import-outside-toplevel
  from experiments.benchmarks.benchmarking import problem  # pylint: disable=import-outside-toplevel
  weights = (resolve_weights(data["weights"]) if data["weights"] != "auto"
             else problem.load_benchmark_weights(problem.BenchmarkSettings())[0])
  size = sizes["photoreal"]
  if "photo_content" in data and not tiny:
    content, style = data["photo_content"], data["photo_style"]
    maps = {"content_seg": data["content_seg"], "style_seg": data["style_seg"]}
  else:
    shape = (round(size * 0.625), size)
    content, style, maps = resize(data["content"], shape), resize(data["style"], shape), {}
  n = sizes["photoreal_iterations"]
  config = photoreal.PhotorealConfig(size=size, stage1_iterations=n, stage2_iterations=n, stall_rtol=None,
                                     **({**SHALLOW, **TINY_OPTIMIZER} if tiny else {}))
  t0 = time.perf_counter()
  result = photoreal.photoreal(content=content, style=style, weights=weights, config=config, progress=False, **maps)
  return {"size": size, "shape": list(result.image.shape[:2]), "segmentation_maps": bool(maps),
          "iterations": [len(result.stage1.loss_history), len(result.stage2.loss_history)],
          "optimizer": config.optimizer,
          "seconds_incl_compile": time.perf_counter() - t0, "final_terms": result.stage2.final_terms,
          "finite": bool(np.all(np.isfinite(result.image)))}


def _has_torch() -> bool:
  import importlib.util  # pylint: disable=import-outside-toplevel
  return importlib.util.find_spec("torch") is not None


def run_section(name: str, tiny: bool) -> Any:
  sizes = TINY if tiny else FULL
  t0 = time.perf_counter()
  try:
    out = globals()[f"section_{name}"](sizes, tiny, inputs(tiny))
  except (NSTError, MemoryError) as e:  # a section that cannot run says why; the others still run
    out = {"error": f"{type(e).__name__}: {e}"}
  return {"result": out, "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------------------------------------------
# The report


def _ms(seconds: float | None) -> str:
  return "–" if seconds is None else f"{seconds * 1e3:.1f}"


def _gib(num_bytes: int | None) -> str:
  return "–" if not num_bytes else f"{num_bytes / 2**30:.2f}"


def markdown(report: dict) -> str:
  sections = report["sections"]
  lines = [f"# nst_jax GPU suite{' (--tiny)' if report['tiny'] else ''}", "",
           f"Machine: {report['machine_description']}; jax {report['machine']['jax']}; "
           f"devices: {', '.join(report['machine']['jax_devices'])}.", ""]
  gatys = sections.get("gatys", {}).get("result")
  if isinstance(gatys, list):
    lines += ["| Gatys (H×W) | prec. | nst_jax ms / iteration (evals) | compile s | torch ms / iteration (evals) |",
              "|---|---|---|---|---|"]
    for row in gatys:
      j, t = row["jax"], row.get("torch") or {}
      torch = (f"{_ms(t.get('median_s'))} ({t['evals_per_step']:.1f})" if "median_s" in t
               else "not timed (--tiny)" if "skipped" in t else "not installed")
      lines.append(f"| {row['shape'][0]}×{row['shape'][1]} | {row['precision']} | {_ms(j['median_s'])} "
                   f"({j['evals_last_step']}) | {j['compile_s']:.1f} | {torch} |")
    lines.append("")
  for name in ("tiled", "sharded"):
    result = sections.get(name, {}).get("result", {})
    runs = [result] if name == "tiled" else [result.get("one_device"), result.get("two_devices")]
    for run in (r for r in runs if r and "tiles" in r):
      lines.append(f"- {name}: {run['shape'][0]}×{run['shape'][1]} on {run['devices']} device(s), {run['tiles']} "
                   f"tiles of window {run['window'][0]}×{run['window'][1]}, {run['iterations']} {run['optimizer']} "
                   f"iterations in {run['optimise_s_incl_compile']:.1f} s with compilation; peak device memory "
                   f"{_gib(run['peak_device_bytes'])} GiB")
    if name == "sharded" and "max_loss_rel_diff" in result:
      lines.append(f"- sharded: 2 devices against 1: losses differ by at most {result['max_loss_rel_diff']:.1e}")
  adain = sections.get("adain", {}).get("result")
  if isinstance(adain, list):
    lines += ["", "| AdaIN (H×W) | path | latency ms (min–max) | first call s |", "|---|---|---|---|"]
    for a in adain:
      t = a["latency"]
      lines.append(f"| {a['shape'][0]}×{a['shape'][1]} | {a['path']} | {_ms(t['median_s'])} ({_ms(t['min_s'])}–"
                   f"{_ms(t['max_s'])}) | {a['first_call_s']:.1f} |")
  photo = sections.get("photoreal", {}).get("result", {})
  if "iterations" in photo:
    lines += ["", f"- photoreal: {photo['shape'][0]}×{photo['shape'][1]}, {'+'.join(map(str, photo['iterations']))} "
              f"{photo['optimizer']} iterations{' with segmentation maps' if photo['segmentation_maps'] else ''}, "
              f"post-processing included: {photo['seconds_incl_compile']:.1f} s with compilation"]
  lines += ["", "| section | seconds | status |", "|---|---|---|"]
  for name, part in sections.items():
    result = part.get("result")
    status = (result.get("error") or result.get("skipped")) if isinstance(result, dict) else None
    lines.append(f"| {name} | {part.get('seconds', 0):.1f} | {status or 'ok'} |")
  return "\n".join(lines) + "\n"


def run_suite(*, tiny: bool, isolate: bool, sections: tuple[str, ...], out: pathlib.Path) -> dict:
  from experiments.benchmarks.benchmarking import machine  # pylint: disable=import-outside-toplevel
  info = machine.machine_info()
  report = {"machine": info, "machine_description": machine.describe_machine(info), "tiny": tiny,
            "bundle": (BUNDLE / "images.npz").is_file(), "sections": {}}
  for name in sections:
    if isolate:
      result_file = out.parent / f".{out.name}.{name}.json"
      # The same working directory and environment as this process, so the module is found as it was here.
      command = [sys.executable, "-m", "experiments.benchmarks.gpu_suite", "--section", name, "--section_out",
                 str(result_file)]
      proc = subprocess.run(command + (["--tiny"] if tiny else []), capture_output=True, text=True, timeout=600,
                            check=False)
      if proc.returncode == 0:
        report["sections"][name] = json.loads(result_file.read_text())
        result_file.unlink()
      else:
        report["sections"][name] = {"result": {"error": f"exit {proc.returncode}: {proc.stderr[-2000:]}"}}
    else:
      report["sections"][name] = run_section(name, tiny)
    print(f"gpu_suite: {name} done in {report['sections'][name].get('seconds', 0):.1f} s", flush=True)
  atomic.write_json(out.with_suffix(".json"), report, sort_keys=False)  # sections in the order they ran
  atomic.write_text(out.with_suffix(".md"), markdown(report))
  return report


def define_flags(fv: flags.FlagValues) -> list:
  flags.DEFINE_string("out", "outputs/gpu_suite/gpu_suite", "Output prefix: writes OUT.json and OUT.md.",
                      flag_values=fv)
  flags.DEFINE_bool("tiny", False, "Tiny sizes on any device (CI): the same code paths in under a minute.",
                    flag_values=fv)
  flags.DEFINE_list("sections", list(SECTIONS), "Sections to run.", flag_values=fv)
  flags.DEFINE_enum("isolate", "auto", ["auto", "yes", "no"], "Each section in its own process (auto: yes unless "
                    "--tiny).", flag_values=fv)
  flags.DEFINE_bool("prepare", False, "Write gpu_bundle/ (on the CPU machine, with the fetched weights) and exit.",
                    flag_values=fv)
  flags.DEFINE_string("data_dir", str(REPO.parent / "shared" / "data"), "--prepare: folder holding "
                      "photoreal/{input,style,segmentation}/ for the photoreal pair (else a generated pair).",
                      flag_values=fv)
  flags.DEFINE_string("section", None, "Internal: run one section and write its JSON to --section_out.",
                      flag_values=fv)
  flags.DEFINE_string("section_out", None, "Internal: see --section.", flag_values=fv)
  return [("suite", ["out", "tiny", "sections", "isolate"]), ("bundle", ["prepare", "data_dir"]),
          ("internal", ["section", "section_out"])]


def run(fv: flags.FlagValues, positional: list[str]) -> None:
  del positional
  if fv.prepare:
    prepare(BUNDLE, pathlib.Path(fv.data_dir))
    return
  if fv.section:
    atomic.write_json(fv.section_out, run_section(fv.section, fv.tiny))
    return
  unknown = sorted(set(fv.sections) - set(SECTIONS))
  if unknown:
    raise NSTError(f"--sections: unknown {', '.join(unknown)}; expected some of {', '.join(SECTIONS)}")
  isolate = fv.isolate == "yes" or (fv.isolate == "auto" and not fv.tiny)
  out = pathlib.Path(fv.out)
  report = run_suite(tiny=fv.tiny, isolate=isolate, sections=tuple(fv.sections), out=out)
  print(markdown(report))
  print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


# No persistent compilation cache: the suite reports compilation times, which a cache from an earlier run would hide.
COMMAND = Command(name="gpu_suite", prog="python -m experiments.benchmarks.gpu_suite",
                  usage="[--tiny] [--out PREFIX] [flags]",
                  description=__doc__.split("\n\n", maxsplit=1)[0], define_flags=define_flags, run=run,
                  compilation_cache=False)

if __name__ == "__main__":
  sys.exit(main(COMMAND, sys.argv[1:]))
