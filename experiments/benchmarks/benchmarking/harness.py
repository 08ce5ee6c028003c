"""Benchmark harness: nst_jax's Gatys iteration against a PyTorch reference of the same work.

What is timed, per image size and precision:

* **eval**: one evaluation of the Gatys loss *and its gradient with respect to the image* (VGG forward to the
  deepest loss layer, content/style/TV losses, backward). This is the comparable unit: every optimizer needs one
  per iteration, L-BFGS sometimes several (its line search), and two L-BFGS implementations need different numbers
  of them. nst_jax's eval is `jax.value_and_grad` of the loss that `nst_jax.methods.gatys` optimises
  (`gatys.make_loss_terms`); the reference is the same loss written the way a PyTorch user would (eager autograd,
  channels_last, oneDNN, `torch.autocast` for bf16) and checked to give the same value and gradient
  (`check_reference`).
* **step**: one optimizer iteration. nst_jax: `optim.make_chunk_runner` (the jitted `fori_loop` that
  `stylize` runs), `steps` iterations per call, time / steps. torch: `torch.optim` (L-BFGS with a strong-Wolfe
  line search, `max_iter=steps` in one `step` call; Adam/SGD/... one `step` per iteration). Function evaluations
  per step are reported beside it, because they differ between the two L-BFGS implementations.
* compile time (lower + compile, separately), peak memory (RSS on CPU, reset before every measurement through
  `/proc/self/clear_refs`; device `peak_bytes_in_use` on GPU) and XLA's own buffer assignment (temp bytes).

Times are the median/min/max of `repeats` calls after `warmup` calls, wall clock, with `jax.block_until_ready`;
process CPU time is recorded beside them (on a loaded machine it is the steadier number of the two).

FLOP model (`flop_breakdown`), per eval, for an (H, W) image and the VGG convolutions up to the deepest layer any
loss uses (every conv is 3x3, stride 1, 'same'; h, w the conv's resolution):

  conv forward          2 h w 9 Cin Cout                     (per conv)
  conv backward         2 h w 9 Cin Cout                     (input gradient only: we differentiate with respect
                                                              to the image, never the weights; conv1_1 included)
  Gram forward          2 M C^2                              (per style layer, M = h w positions)
  Gram backward         2 M C^2                              (the one product F (G + G^T) of `losses.gram_product`;
                                                              plain autodiff, torch's included, does two)

Bias, ReLU, pooling, masks and the loss reductions are O(elements) and left out (< 1% of the total for VGG).
Convolutions are counted with their zero padding, the usual convention; `count_padding=False` counts only the
taps inside the image, which is what XLA's cost analysis counts (the test holds the two within 1%). Achieved
GFLOP/s are this count divided by time: an implementation that needs fewer multiplications for the same result
(Winograd) would show a higher *effective* rate, one that does more (torch's two-product Gram backward) a
slightly lower one.

Stated peak (`stated_peak_gflops`): cores x FLOP/cycle/core x clock, FLOP/cycle from the vector units that
/proc/cpuinfo's vendor, family and flags imply, the clock from its `cpu MHz` (the nominal clock; turbo is not
visible, in a VM least of all, so a good kernel can pass 100%). The harness also measures a large matrix product,
the practical ceiling of both frameworks on the machine.

AdaIN (`--adain_sizes`, e.g. 512,1024,3840x2160): the latency of one `nst_jax.methods.adain.stylize` call, content and
style of that size, end to end (host image in, host image out: style and content encoding, AdaIN, decoding;
images above its 2-megapixel default go through thumbnail-normalised tiles, as the CLI does), with the first call
(compilation included) apart. Its FLOPs are the encoder's convolutions up to relu4_1 at the content's size, twice
(the decoder mirrors them), plus the style's encoding.

The tiled high-resolution loss (`nst_jax.highres`, `--tile_size N`) is timed per size as one eval of the whole
image through N-px tiles, per megapixel and against the untiled eval of the same size (the halo's overhead).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib.util
import multiprocessing
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nst_jax.errors import NSTError

from experiments.benchmarks.benchmarking.flops import flop_breakdown
from experiments.benchmarks.benchmarking.jax_timing import device_scaling, time_adain, time_jax, time_tiled
from experiments.benchmarks.benchmarking.machine import (describe_machine, machine_info, measure_gemm_gflops,
                                                        stated_peak_gflops)
from experiments.benchmarks.benchmarking.problem import BenchmarkSettings, benchmark_shape, build_problem

SKIPPED = {
    "adain": "AdaIN single forward passes (e.g. 512/1024/4K): run with --adain_sizes 512,1024,3840x2160",
    "tiled": "tiled high-resolution loss per megapixel: run with --tile_size N (N > 0)",
}



def measure(kind: str, settings: BenchmarkSettings, shape: tuple[int, int]) -> dict[str, Any]:
  """'jax' or 'torch' timings of one size. Run in a fresh process (`isolate`) for clean peak-memory numbers and
  so that neither framework's idle worker threads compete with the other's."""
  if kind == "tiled":
    return time_tiled(settings, shape)
  if kind == "adain":
    return time_adain(settings, shape)
  problem = build_problem(settings, shape)
  if kind == "jax":
    out = time_jax(problem)
  else:
    # pylint: disable-next=import-outside-toplevel (optional torch)
    from experiments.benchmarks.benchmarking.torch_reference import time_torch
    out = time_torch(problem)
  out["weights"] = problem.weights_note
  return out



def measure_isolated(kind: str, settings: BenchmarkSettings, shape: tuple[int, int]) -> dict[str, Any]:
  ctx = multiprocessing.get_context("spawn")
  with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
    return pool.submit(measure, kind, settings, shape).result()


def run_benchmark(settings_list: Sequence[BenchmarkSettings], sizes: Sequence[int], *, aspect: float = 4 / 3,
                  reference: str = "torch", devices: int = 1, tile_size: int = 0,
                  adain_shapes: Sequence[tuple[int, int]] = (), isolate: bool = True,
                  peak_gflops: float = 0.0, check_size: int = 64, gemm_size: int = 2048,
                  log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True)
                  ) -> dict[str, Any]:
  """Every (precision setting, size) with nst_jax and, if `reference == 'torch'`, the PyTorch reference; then
  the reference check at `check_size`, device scaling if `devices > 1`, AdaIN latency at each of `adain_shapes`
  ((H, W)). Returns the report (JSON-ready)."""
  if reference not in ("torch", "none"):
    raise NSTError(f"--reference must be 'torch' or 'none', got {reference!r}")
  if reference == "torch" and importlib.util.find_spec("torch") is None:
    raise NSTError("--reference torch needs PyTorch: pip install -e '.[torch]' (or use --reference none)")
  info = machine_info()
  report: dict[str, Any] = {"machine": info, "machine_description": describe_machine(info),
                            "argv": sys.argv, "aspect": aspect, "reference": reference, "results": [],
                            "peaks": {}, "skipped": dict(SKIPPED)}
  if tile_size:
    del report["skipped"]["tiled"]
    report["tiled"] = []
  for precision in dict.fromkeys(s.precision for s in settings_list):
    stated, derivation = stated_peak_gflops(info["cpu"], precision)
    if peak_gflops > 0:
      stated, derivation = peak_gflops, f"{peak_gflops:g} GFLOP/s given by --peak_gflops"
    if info["jax_backend"] != "cpu" and peak_gflops <= 0:
      stated, derivation = 0.0, "no stated peak for accelerators; give --peak_gflops"
    report["peaks"][precision] = {"stated_gflops": stated, "derivation": derivation,
                                  "gemm_size": gemm_size, "jax_gemm_gflops": measure_gemm_gflops(precision, gemm_size)}
  run = measure_isolated if isolate else measure
  for settings in settings_list:
    for size in sorted(sizes):  # ascending, so that a device's never-reset peak is that of the current size
      shape = benchmark_shape(size, aspect)
      flops = flop_breakdown(settings.arch, shape, content_layers=settings.content_layers,
                             style_layers=settings.style_layers)
      row: dict[str, Any] = {"size": size, "shape": list(shape), "megapixels": shape[0] * shape[1] / 1e6,
                             "precision": settings.precision, "arch": settings.arch,
                             "optimizer": settings.optimizer, "layers": list(settings.layers),
                             "flops": flops, "gflop": sum(flops.values()) / 1e9}
      log(f"[benchmark] {settings.arch} {settings.precision} {shape[0]}x{shape[1]}: nst_jax ...")
      row["jax"] = run("jax", settings, shape)
      if reference == "torch":
        log(f"[benchmark] {settings.arch} {settings.precision} {shape[0]}x{shape[1]}: torch ...")
        row["torch"] = run("torch", settings, shape)
      derive(row, report["peaks"][settings.precision])
      report["results"].append(row)
      if tile_size:
        log(f"[benchmark] {settings.arch} {settings.precision} {shape[0]}x{shape[1]}: tiled, {tile_size} px ...")
        tiled = run("tiled", dataclasses.replace(settings, tile_size=tile_size), shape)
        tiled["untiled_eval_s"] = row["jax"]["eval"]["median_s"]
        report["tiled"].append({"size": size, "shape": list(shape), "precision": settings.precision, **tiled})
  if reference == "torch":
    check_settings = dataclasses.replace(settings_list[0], precision="fp32")
    # pylint: disable-next=import-outside-toplevel (torch)
    from experiments.benchmarks.benchmarking.torch_reference import check_reference
    log(f"[benchmark] reference check at {check_size} px ...")
    report["reference_check"] = {"size": check_size,
                                 **check_reference(build_problem(check_settings, benchmark_shape(check_size,
                                                                                                 aspect)))}
  if devices > 1:
    log(f"[benchmark] device scaling over {devices} devices ...")
    report["device_scaling"] = device_scaling(build_problem(settings_list[0], benchmark_shape(min(sizes), aspect)),
                                              devices)
  else:
    report["skipped"]["device_scaling"] = "run with --devices N (N > 1) to time and check N-device sharding"
  if adain_shapes:
    del report["skipped"]["adain"]
    report["adain"] = []
    for shape in adain_shapes:
      log(f"[benchmark] AdaIN {shape[0]}x{shape[1]} ...")
      report["adain"].append(run("adain", settings_list[0], tuple(shape)))
  return report


def derive(row: dict[str, Any], peak: Mapping[str, Any]) -> None:
  """Achieved GFLOP/s, % of the stated peak and the torch/nst_jax ratios."""
  flop = row["gflop"]
  for kind in ("jax", "torch"):
    if kind in row:
      t = row[kind]["eval"]["median_s"]
      row[kind]["gflops"] = flop / t
      row[kind]["percent_of_peak"] = 100 * flop / t / peak["stated_gflops"] if peak["stated_gflops"] else None
  if "torch" in row:
    row["speedup_eval"] = row["torch"]["eval"]["median_s"] / row["jax"]["eval"]["median_s"]
    if row["torch"].get("step") and "median_s" in row["torch"]["step"]:
      row["speedup_step"] = row["torch"]["step"]["median_s"] / row["jax"]["step"]["median_s"]

