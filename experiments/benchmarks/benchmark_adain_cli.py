"""Latency of `nst-jax adain` as a user sees it: wall time of whole shell commands, first and second call,
and of the stylisation alone at 512x512.

Run (from the repository root; a benchmark, not a test, and the CPU is shared, so run it when it is quiet):
  python -m experiments.benchmarks.benchmark_adain_cli --out docs/performance/benchmark_adain_cli

Measures, with fresh, empty compilation and style caches in a temporary folder:
  1. first call: `python -m nst_jax adain` on a 1024x768 content (the demo photo, resized) and a style image
     (compiles, encodes the style, fills both caches);
  2. second call: the same command again (`--repeats` times; min and median): loads the compiled executables and the
     style statistics from the caches;
  3. another size in the same bucket (1000x760): no compilation either;
  4. in one process, `adain.stylize` of a 512x512 content with cached style statistics (median of --repeats after
     a warm-up), i.e. the encoder + AdaIN + decoder work alone.
The target on this 2-core CPU: second call <= 3 s from the shell, 512x512 stylisation <= 1 s. Writes OUT.json
(every number, the load average before and after) and OUT.md (a table).
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from nst_jax import demo
from nst_jax.io import atomic, image_io
from nst_jax.methods.adain import stylize as adain
from nst_jax.models import adain_decoder
from nst_jax.weights import adain_decoders

flags.DEFINE_string("decoder", adain_decoder.DEFAULT_DECODER, "Decoder .npz or name.")
flags.DEFINE_integer("repeats", 3, "Repeats of the second call and of the 512x512 stylisation.")
flags.DEFINE_string("out", "docs/performance/benchmark_adain_cli", "Writes OUT.json and OUT.md.")
FLAGS = flags.FLAGS
REPO = pathlib.Path(__file__).resolve().parents[2]


def shell_call(args: list[str], env: dict) -> float:
  start = time.perf_counter()
  proc = subprocess.run([sys.executable, "-m", "nst_jax", "adain", *args], cwd=REPO, env=env, capture_output=True,
                        text=True, check=False)
  wall = time.perf_counter() - start
  if proc.returncode:
    raise SystemExit(f"error: the adain command failed: {proc.stderr.strip()[-500:]}")
  return wall


def stylize_512(decoder: str, repeats: int) -> list[float]:
  ckpt = adain_decoders.resolve_decoder(decoder)
  weights = None
  if ckpt.student is None:
    from nst_jax.weights.store import resolve_weights  # pylint: disable=import-outside-toplevel
    weights = resolve_weights("hed-vgg16")
  model = adain.make_model(weights, ckpt)
  content = image_io.resize(demo.default_content(), 512, 512)
  stats = [adain.style_statistics(model, demo.default_style())]
  adain.stylize(content, [], model=model, style_stats=stats)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    adain.stylize(content, [], model=model, style_stats=stats)
    times.append(time.perf_counter() - start)
  return times


def main(argv):
  del argv
  load_before = os.getloadavg()
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    photo = demo.default_content()
    image_io.save_image(tmp / "c1024.png", image_io.resize(photo, 768, 1024))
    image_io.save_image(tmp / "c1000.png", image_io.resize(photo, 760, 1000))
    image_io.save_image(tmp / "style.png", demo.default_style())
    env = dict(os.environ, NST_JAX_COMPILATION_CACHE=str(tmp / "xla"), NST_JAX_STYLE_CACHE=str(tmp / "styles"),
               JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    args = ["--style", str(tmp / "style.png"), "--decoder", FLAGS.decoder]
    first = shell_call(["--content", str(tmp / "c1024.png"), "--output", str(tmp / "o.png"), *args], env)
    second = [shell_call(["--content", str(tmp / "c1024.png"), "--output", str(tmp / "o.png"), *args], env)
              for _ in range(FLAGS.repeats)]
    bucket = shell_call(["--content", str(tmp / "c1000.png"), "--output", str(tmp / "o2.png"), *args], env)
    entries = len(list((tmp / "xla").iterdir()))
  times_512 = stylize_512(FLAGS.decoder, FLAGS.repeats)
  record = {"decoder": FLAGS.decoder, "first_call_s": first, "second_call_s": second,
            "same_bucket_call_s": bucket, "compilation_cache_entries": entries, "stylize_512_s": times_512,
            "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "cpus": os.cpu_count()}
  out = pathlib.Path(FLAGS.out)
  atomic.write_text(out.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
  table = ("| measurement (1024x768 content, shell wall time) | seconds |\n|---|---|\n"
           f"| first call (empty caches: compiles) | {first:.2f} |\n"
           f"| second call (min / median of {len(second)}) | {min(second):.2f} / {statistics.median(second):.2f} |\n"
           f"| 1000x760, same bucket | {bucket:.2f} |\n"
           f"| stylisation alone, 512x512 (min / median of {len(times_512)}) | {min(times_512):.2f} / "
           f"{statistics.median(times_512):.2f} |\n\n"
           f"Load average before / after: {load_before[0]:.1f} / {record['loadavg_after'][0]:.1f} "
           f"({record['cpus']} CPUs, shared).\n")
  atomic.write_text(out.with_suffix(".md"), table)
  print(table)


if __name__ == "__main__":
  app.run(main)
