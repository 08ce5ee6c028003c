"""Benchmark harness: nst_jax's Gatys iteration against a PyTorch reference of the same work.

Run (under 10 minutes on a 2-core CPU; needs the torch extra: pip install -e '.[torch]'):
  python -m experiments.benchmarks.benchmark --sizes 256,512 --reference torch --out docs/performance/benchmark

Expected: one table row per size (256x341 and 512x683 at the default 4:3 aspect) with nst_jax's and torch's time
per eval (loss + image gradient) and per L-BFGS step, their ratio (torch/nst_jax > 1: nst_jax faster), GFLOP/s
and % of the stated peak, compile time and peak RSS; a line saying the torch reference's loss and gradient equal
nst_jax's to ~1e-6; lines naming what is not measured yet. Writes OUT.json (every raw number and the machine),
OUT.md (the table) and OUT.png (time and memory against megapixels).

More:
  --precision fp32,bf16       both precisions (bf16: VGG in bfloat16, image and losses in float32)
  --devices 4                 also shard 4 images over 4 simulated CPU devices and check the losses
  --network vgg19 --style_layers relu1_1,relu2_1,relu3_1,relu4_1,relu5_1 --content_layers relu4_2
  --reference none            nst_jax only (no torch needed)
  --adain_sizes 512,1024,3840x2160   also the latency of one AdaIN stylisation (host image in, image out) per size
  --tile_size 256             also one eval of the tiled high-resolution loss per size (ms per megapixel)
Definitions (FLOP model, peak, what eval and step mean): the docstring of
experiments/benchmarks/benchmarking/harness.py.
"""

import os
import sys


def _force_host_devices(argv: list[str]) -> None:
  """--devices N on CPU needs N XLA host devices, which XLA reads from XLA_FLAGS when JAX starts, i.e. before absl
  has parsed any flag; so this one is read from argv here, before jax is imported."""
  count = 1
  for i, arg in enumerate(argv):
    if arg.startswith("--devices="):
      count = int(arg.split("=", 1)[1])
    elif arg == "--devices" and i + 1 < len(argv):
      count = int(argv[i + 1])
  if count > 1 and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={count}").strip()


_force_host_devices(sys.argv)

from absl import app, flags  # noqa: E402 (after the XLA_FLAGS set-up above)

from experiments.benchmarks.benchmarking.harness import run_benchmark  # noqa: E402
from experiments.benchmarks.benchmarking.problem import BenchmarkSettings, parse_image_size  # noqa: E402
from experiments.benchmarks.benchmarking.report import write_report  # noqa: E402
from nst_jax.objective.config import CONTENT_LAYERS, STYLE_LAYERS
from nst_jax.errors import NSTError  # noqa: E402

_SIZES = flags.DEFINE_list("sizes", ["256", "512"], "Image heights; width = height x --aspect.")
_ASPECT = flags.DEFINE_float("aspect", 4 / 3, "Width / height of the benchmark images.")
_NETWORK = flags.DEFINE_enum("network", "vgg16", ["vgg16", "vgg19"], "VGG architecture.")
_WEIGHTS = flags.DEFINE_string("weights", "auto", "Weights name or path; auto: the network's default set if "
                               "fetched, else random weights (timing does not depend on the values).")
_PRECISION = flags.DEFINE_list("precision", ["fp32"], "fp32 and/or bf16 (VGG in bfloat16, losses in float32).")
_CONTENT_LAYERS = flags.DEFINE_list("content_layers", list(CONTENT_LAYERS), "Content layers.")
_STYLE_LAYERS = flags.DEFINE_list("style_layers", list(STYLE_LAYERS), "Style layers.")
_OPTIMIZER = flags.DEFINE_string("optimizer", "lbfgs", "Optimizer of the step timing (lbfgs or an optax name).")
_DEVICES = flags.DEFINE_integer("devices", 1, "N > 1: also shard N images over N devices (simulated on CPU).")
_TILE_SIZE = flags.DEFINE_integer("tile_size", 0, "N > 0: also time one eval of the tiled loss (nst_jax.highres) "
                                  "with N-px tiles at every size.")
_ADAIN_SIZES = flags.DEFINE_list("adain_sizes", [], "Also time one AdaIN stylisation per size: N (N x N) or WxH "
                                  "(e.g. 512,1024,3840x2160).")
_REFERENCE = flags.DEFINE_enum("reference", "torch", ["torch", "none"], "Time the PyTorch reference too.")
_OUT = flags.DEFINE_string("out", "docs/performance/benchmark", "Output prefix: writes OUT.json, OUT.md, OUT.png.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed evals per size after the warm-up.")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Untimed calls before timing.")
_STEPS = flags.DEFINE_integer("steps", 3, "Optimizer steps per timed call.")
_STEP_REPEATS = flags.DEFINE_integer("step_repeats", 3, "Timed optimizer calls per size.")
_PEAK = flags.DEFINE_float("peak_gflops", 0.0, "Stated peak GFLOP/s for '% of peak'; 0: derived from "
                           "py-cpuinfo (see the report for the derivation).")
_ISOLATE = flags.DEFINE_bool("isolate", True, "Measure every (size, framework) in a fresh process (clean peak "
                             "memory, no idle threads of the other framework).")


def main(argv):
  del argv
  try:
    settings = [BenchmarkSettings(arch=_NETWORK.value, weights=_WEIGHTS.value, precision=p,
                                  content_layers=tuple(_CONTENT_LAYERS.value),
                                  style_layers=tuple(_STYLE_LAYERS.value), optimizer=_OPTIMIZER.value,
                                  warmup=_WARMUP.value, repeats=_REPEATS.value, steps=_STEPS.value,
                                  step_repeats=_STEP_REPEATS.value) for p in _PRECISION.value]
    sizes = [int(s) for s in _SIZES.value]
    report = run_benchmark(settings, sizes, aspect=_ASPECT.value, reference=_REFERENCE.value,
                           devices=_DEVICES.value, tile_size=_TILE_SIZE.value,
                           adain_shapes=[parse_image_size(s) for s in _ADAIN_SIZES.value],
                           isolate=_ISOLATE.value,
                           peak_gflops=_PEAK.value)
  except (NSTError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  paths = write_report(report, _OUT.value)
  print(paths["markdown"].read_text())
  print("wrote", ", ".join(str(p) for p in paths.values()))
  return 0


if __name__ == "__main__":
  app.run(main)
