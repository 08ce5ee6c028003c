"""The benchmark's report: Markdown tables, a plot and the raw JSON, all written atomically."""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from nst_jax.io import atomic


def _ms(seconds: float | None) -> str:
  return "–" if seconds is None else f"{seconds * 1e3:.0f}" if seconds >= 0.1 else f"{seconds * 1e3:.1f}"


def _mib(num_bytes: int | None) -> str:
  return "–" if num_bytes is None else f"{num_bytes / 2**20:.0f}"


def _memory(part: Mapping[str, Any]) -> int | None:
  return part.get("device_peak_bytes") or part.get("peak_rss_bytes")


def _memory_cell(part: Mapping[str, Any] | None) -> str:
  """Peak MiB and, on CPU, (+ what the timed calls added to the RSS they started from)."""
  if not part:
    return "–"
  if part.get("device_peak_bytes"):
    return _mib(part["device_peak_bytes"])
  added = part["peak_rss_bytes"] - part["rss_before_bytes"] if part.get("rss_before_bytes") else None
  return _mib(part["peak_rss_bytes"]) + ("" if added is None else f" (+{_mib(added)})")


def _gatys_table(report: Mapping[str, Any]) -> list[str]:
  """One row per (precision, size) of the Gatys eval and step timings, and what they mean."""
  lines: list[str] = []
  has_torch = any("torch" in r for r in report["results"])
  head = ["size (H×W)", "MP", "prec.", "GFLOP/eval", "nst_jax eval ms (min–max)", "GFLOP/s", "% peak",
          "compile s"]
  if has_torch:
    head += ["torch eval ms (min–max)", "torch/nst_jax eval"]
  head += ["nst_jax step ms (evals)"]
  if has_torch:
    head += ["torch step ms (evals)", "torch/nst_jax step"]
  head += ["peak MiB (+added) nst_jax" + (" / torch" if has_torch else "")]
  lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in report["results"]:
    j = r["jax"]
    cells = [f"{r['shape'][0]}×{r['shape'][1]}", f"{r['megapixels']:.3f}", r["precision"], f"{r['gflop']:.1f}",
             f"{_ms(j['eval']['median_s'])} ({_ms(j['eval']['min_s'])}–{_ms(j['eval']['max_s'])})",
             f"{j['gflops']:.0f}", "–" if j["percent_of_peak"] is None else f"{j['percent_of_peak']:.0f}%",
             f"{j['compile_s']:.1f}"]
    t = r.get("torch")
    if has_torch:
      cells += [f"{_ms(t['eval']['median_s'])} ({_ms(t['eval']['min_s'])}–{_ms(t['eval']['max_s'])})",
                f"**{r['speedup_eval']:.2f}×**"] if t else ["–", "–"]
    cells.append(f"{_ms(j['step']['median_s'])} ({j['step']['evals_last_step']})")
    if has_torch:
      ts = t.get("step") if t else None
      if ts and "median_s" in ts:
        cells += [f"{_ms(ts['median_s'])} ({ts['evals_per_step']:.1f})", f"{r['speedup_step']:.2f}×"]
      else:
        cells += ["–", "–"]
    memory = _memory_cell(j["eval"])
    if has_torch:
      memory += " / " + _memory_cell(t["eval"] if t else None)
    cells.append(memory)
    lines.append("| " + " | ".join(cells) + " |")
  lines += ["", "eval = loss + gradient with respect to the image (VGG forward and backward); step = one optimizer "
            "iteration (evals: function evaluations in it — nst_jax: the last iteration's line search, torch: the "
            "mean); torch/nst_jax > 1 means nst_jax is faster. Times are medians over repeats after warm-up; "
            "GFLOP/s use the analytic FLOP model of `experiments/benchmarks/benchmarking/flops.py` and the median "
            "time."]
  return lines


def markdown_table(report: Mapping[str, Any]) -> str:
  """The results as Markdown: machine, peaks, one row per (precision, size), then checks and skipped parts."""
  weights = sorted({r[kind]["weights"] for r in report["results"] for kind in ("jax", "torch") if kind in r}
                   | {a["weights"] for a in report.get("adain", [])})
  lines = [f"Machine: {report['machine_description']}; jax {report['machine']['jax']}, "
           f"torch {report['machine'].get('torch') or 'not installed'}.",
           f"Command: `{' '.join(['python', *report['argv']])}`; weights: {'; '.join(weights)}.", ""]
  for precision, peak in report["peaks"].items():
    lines.append(f"- {precision} peak: {peak['derivation']}; a {peak['gemm_size']}³ JAX matrix product runs at "
                 f"{peak['jax_gemm_gflops']:.0f} GFLOP/s.")
  lines.append("")
  if report["results"]:
    lines += _gatys_table(report)
  check = report.get("reference_check")
  if check:
    lines.append(f"Reference check ({check['size']} px, fp32): loss differs by {check['loss_rel_diff']:.1e}, "
                 f"gradient by {check['grad_rel_diff']:.1e} (relative).")
  scaling = report.get("device_scaling")
  if scaling:
    lines.append(f"Device scaling: {scaling['devices']} {scaling['device_kind']} devices, one image each: sharded "
                 f"eval {_ms(scaling['sharded_eval']['median_s'])} ms vs {scaling['devices']} one-device evals "
                 f"{_ms(scaling['sequential_one_device']['median_s'])} ms; losses differ by at most "
                 f"{scaling['max_loss_rel_diff']:.1e}, gradients by {scaling['max_grad_rel_diff']:.1e}.")
  for t in report.get("tiled", []):
    lines.append(f"Tiled loss ({t['precision']}, {t['shape'][0]}×{t['shape'][1]}): {t['tiles']} tiles of "
                 f"{t['tile_size']} px (windows {t['window'][0]}×{t['window'][1]}, halo {t['halo']} px) on "
                 f"{t['devices']} device(s): eval {_ms(t['eval']['median_s'])} ms = {t['ms_per_megapixel']:.0f} "
                 f"ms/MP, {t['eval']['median_s'] / t['untiled_eval_s']:.2f}× the untiled eval; compile "
                 f"{t['compile_s']:.1f} s.")
  if report.get("adain"):
    lines += ["", "| AdaIN (H×W) | MP | path | latency ms (min–max) | first call s | GFLOP | GFLOP/s | peak MiB |",
              "|---|---|---|---|---|---|---|---|"]
    for a in report["adain"]:
      t = a["latency"]
      lines.append(f"| {a['shape'][0]}×{a['shape'][1]} | {a['megapixels']:.2f} | {a['path']} | {_ms(t['median_s'])} "
                   f"({_ms(t['min_s'])}–{_ms(t['max_s'])}) | {a['first_call_s']:.1f} | {a['gflop']:.0f} | "
                   f"{a['gflops']:.0f} | {_memory_cell(a['memory'])} |")
    lines += ["", "AdaIN: one `nst_jax.methods.adain.stylize` call, host image in and out, α = 1, style of the same "
              "size; first call includes compilation.", ""]
  for what, why in report["skipped"].items():
    lines.append(f"Not measured ({what}): {why}.")
  return "\n".join(lines) + "\n"


def plot(report: Mapping[str, Any], path: str | os.PathLike) -> None:
  """Time per eval/step and peak memory against megapixels, one line per framework and precision."""
  import matplotlib  # noqa: PLC0415 (only the report needs it)
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
  # Colour: framework; line style: precision; marker: eval (o) or optimizer step (x).
  for precision, style in zip(dict.fromkeys(r["precision"] for r in report["results"]), ("-", ":", "--")):
    rows = [r for r in report["results"] if r["precision"] == precision]
    mp = [r["megapixels"] for r in rows]
    for kind, label, color in (("jax", "nst_jax", "C0"), ("torch", "torch", "C1")):
      if not all(kind in r for r in rows):
        continue
      ax_t.plot(mp, [r[kind]["eval"]["median_s"] * 1e3 for r in rows], style, marker="o", color=color,
                label=f"{label} eval {precision}")
      step = [r[kind]["step"].get("median_s") if r[kind].get("step") else None for r in rows]
      if all(v is not None for v in step):
        ax_t.plot(mp, [v * 1e3 for v in step], style, marker="x", color=color, alpha=0.5,
                  label=f"{label} step {precision}")
      ax_m.plot(mp, [(_memory(r[kind]["eval"]) or 0) / 2**20 for r in rows], style, marker="o", color=color,
                label=f"{label} {precision}")
  if report.get("adain"):
    mp = [a["megapixels"] for a in report["adain"]]
    ax_t.plot(mp, [a["latency"]["median_s"] * 1e3 for a in report["adain"]], "-", marker="s", color="C2",
              label="nst_jax AdaIN stylisation")
    ax_m.plot(mp, [(_memory(a["memory"]) or 0) / 2**20 for a in report["adain"]], "-", marker="s", color="C2",
              label="nst_jax AdaIN")
  ax_t.set(xlabel="megapixels", ylabel="ms per eval / step / stylisation", title="time")
  ax_m.set(xlabel="megapixels", ylabel="MiB", title="peak memory (RSS on CPU, device on GPU)")
  for ax in (ax_t, ax_m):
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8)
  fig.suptitle(report["machine_description"], fontsize=9)
  fig.tight_layout()
  atomic.write_figure(fig, path, dpi=110)
  plt.close(fig)


def write_report(report: Mapping[str, Any], out: str | os.PathLike) -> dict[str, pathlib.Path]:
  """Writes OUT.json, OUT.md and OUT.png (OUT a path prefix; a directory gets benchmark.* inside it)."""
  out = pathlib.Path(out)
  if out.is_dir() or not out.suffix and str(out).endswith(os.sep):
    out = out / "benchmark"
  out.parent.mkdir(parents=True, exist_ok=True)
  paths = {"json": out.with_suffix(".json"), "markdown": out.with_suffix(".md"), "plot": out.with_suffix(".png")}
  atomic.write_text(paths["json"], json.dumps(report, indent=1, default=_json_default) + "\n")
  atomic.write_text(paths["markdown"], markdown_table(report))
  plot(report, paths["plot"])
  return paths


def _json_default(value: Any) -> Any:
  if isinstance(value, (np.floating, np.integer)):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  return str(value)

