"""The benchmark harness in a tiny configuration (so that it cannot rot), its FLOP model and its peak figures."""

import importlib.util
import json

import jax
import numpy as np
import pytest

from experiments.benchmarks.benchmarking import flops, harness, jax_timing, machine
from experiments.benchmarks.benchmarking.problem import BenchmarkSettings, build_problem, parse_image_size
from experiments.benchmarks.benchmarking.report import write_report
from nst_jax.errors import NSTError

REFERENCE = "torch" if importlib.util.find_spec("torch") else "none"


def test_flop_model_hand_count():
  # VGG16 to relu2_1 on a 4x6 image: conv1_1 and conv1_2 at 4x6, pool, conv2_1 at 2x3.
  got = flops.flop_breakdown("vgg16", (4, 6), content_layers=("relu1_2",), style_layers=("relu1_1", "relu2_1"))
  convs = 2 * 4 * 6 * 9 * (3 * 64 + 64 * 64) + 2 * 2 * 3 * 9 * 64 * 128
  grams = 2 * 4 * 6 * 64 ** 2 + 2 * 2 * 3 * 128 ** 2
  assert got == {"conv_forward": convs, "conv_backward": convs, "gram_forward": grams, "gram_backward": grams}
  # Taps inside the image only: (3h - 2)(3w - 2) per channel pair instead of 9 h w.
  exact = flops.flop_breakdown("vgg16", (4, 6), content_layers=("relu1_2",), style_layers=("relu1_1", "relu2_1"),
                               count_padding=False)
  assert exact["conv_forward"] == 2 * 10 * 16 * (3 * 64 + 64 * 64) + 2 * 4 * 7 * 64 * 128
  assert flops.gatys_flops("vgg16", (4, 6), content_layers=("relu1_2",),
                           style_layers=("relu1_1", "relu2_1")) == sum(got.values())


def test_stated_peaks():
  spr = {"vendor": "GenuineIntel", "family": 6, "model": 143, "mhz": 2600.0, "cores": 2,
         "flags": ["avx512f", "avx512_bf16", "amx_bf16"]}
  spr["microarchitecture"] = machine.microarchitecture(spr)
  peak, why = machine.stated_peak_gflops(spr, "fp32")
  assert spr["microarchitecture"] == "Sapphire Rapids" and peak == pytest.approx(332.8) and "2 cores" in why
  assert machine.stated_peak_gflops(spr, "bf16")[0] == pytest.approx(2 * 1024 * 2.6)
  zen4 = {"vendor": "AuthenticAMD", "family": 25, "model": 17, "mhz": 2600.0, "cores": 2,
          "flags": ["avx512f", "avx512_bf16"]}
  zen4["microarchitecture"] = machine.microarchitecture(zen4)
  assert machine.stated_peak_gflops(zen4, "fp32")[0] == pytest.approx(166.4)
  assert machine.stated_peak_gflops(zen4, "bf16")[0] == pytest.approx(332.8)


@pytest.mark.slow
def test_tiny_harness_run_and_report(tmp_path):
  # One torch thread: the test checks the numbers, not the speed, and two OpenMP threads on a busy 2-core machine
  # can take 20x longer.
  settings = BenchmarkSettings(warmup=1, repeats=2, steps=2, step_repeats=1, threads=1)
  report = harness.run_benchmark([settings], [32], reference=REFERENCE, isolate=False, check_size=32,
                                 gemm_size=128, log=lambda msg: None)
  report["device_scaling"] = jax_timing.device_scaling(
      build_problem(settings, (16, 21)), len(jax.devices()))
  paths = write_report(report, tmp_path / "bench")
  data = json.loads(paths["json"].read_text())
  assert data["machine"]["cpu"]["model_name"] and data["machine"]["jax"] == jax.__version__
  assert data["peaks"]["fp32"]["derivation"] and data["peaks"]["fp32"]["jax_gemm_gflops"] > 0
  (row,) = data["results"]
  assert row["shape"] == [32, 43] and row["gflop"] > 0
  jax_part = row["jax"]
  assert jax_part["compile_s"] > 0 and jax_part["xla_flops"] > 0 and jax_part["gflops"] > 0
  assert 0 < jax_part["eval"]["min_s"] <= jax_part["eval"]["median_s"] <= jax_part["eval"]["max_s"]
  assert len(jax_part["eval"]["times_s"]) == 2 and jax_part["eval"]["peak_rss_bytes"] > 0
  assert jax_part["step"]["median_s"] > 0 and jax_part["step"]["evals_last_step"] >= 1
  # The FLOP model counting only taps inside the image is what XLA's cost analysis counts (plus < 1% of
  # elementwise work); the headline model also counts the zero padding.
  exact = sum(flops.flop_breakdown("vgg16", (32, 43), content_layers=settings.content_layers,
                                   style_layers=settings.style_layers, count_padding=False).values())
  assert abs(jax_part["xla_flops"] / exact - 1) <= 0.01, (jax_part["xla_flops"], exact)
  scaling = data["device_scaling"]
  assert scaling["max_loss_rel_diff"] <= 1e-5 and scaling["max_grad_rel_diff"] <= 1e-5
  table = paths["markdown"].read_text()
  assert "| size (H×W) |" in table and "| 32×43 |" in table and "Not measured (tiled)" in table
  assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  if REFERENCE == "torch":
    # The reference does the same work: same loss and image gradient (fp32).
    check = data["reference_check"]
    assert check["loss_rel_diff"] <= 1e-4 and check["grad_rel_diff"] <= 1e-4, check
    assert abs(row["torch"]["loss"] - jax_part["loss"]) <= 1e-4 * abs(jax_part["loss"])
    assert row["speedup_eval"] > 0 and row["torch"]["step"]["evals_per_step"] >= 1
    assert "torch/nst_jax eval" in table


def test_adain_latency_times_the_cli_path():
  """The AdaIN timing runs `adain.stylize` as the CLI does: whole below the pixel budget, thumbnail-normalised
  tiles above it; its FLOPs are counted from the model's kernels (twice the encoder's plus the style's encoding for
  the paper's decoder)."""
  settings = BenchmarkSettings(warmup=0, repeats=2)
  whole = jax_timing.time_adain(settings, (32, 48))
  tiled = jax_timing.time_adain(settings, (96, 80), max_pixels=64 * 64)
  assert whole["path"] == "whole image" and whole["output_shape"] == [32, 48, 3] and whole["output_finite"]
  assert tiled["path"].startswith("4 tiles of 64 px") and tiled["output_shape"] == [96, 80, 3]
  for part in (whole, tiled):
    assert 0 < part["latency"]["min_s"] <= part["latency"]["median_s"] and part["memory"]["peak_rss_bytes"] > 0
  encoder = sum(2.0 * 9 * h * w * cin * cout for _, h, w, cin, cout in flops.conv_plan("vgg16", (32, 48),
                                                                                            ("relu4_1",)))
  model, _ = jax_timing.adain_model(settings)
  np.testing.assert_allclose(whole["gflop"] * 1e9, flops.adain_flops(model.enc_params, model.dec_params, (32, 48),
                                                                     (32, 48)))
  if model.student_width == 0 and model.skip_width == 0:  # the paper's decoder mirrors the teacher encoder
    np.testing.assert_allclose(whole["gflop"] * 1e9, 3 * encoder)
  else:  # the shipped fast model: a student encoder and a thin decoder do a fraction of that work
    assert whole["gflop"] * 1e9 < 0.2 * 3 * encoder
  # A width-16 student and its decoder with skips, counted from their kernel shapes by hand.
  rng = np.random.default_rng(0)
  enc = {"conv1_1": {"kernel": rng.normal(size=(3, 3, 3, 16))}, "conv4_1": {"kernel": rng.normal(size=(3, 3, 8, 32))},
         "conv5_1": {"kernel": rng.normal(size=(3, 3, 32, 32))}}
  dec = {"dec4_1/kernel": np.zeros((3, 3, 32, 8)), "dec1_1/kernel": np.zeros((3, 3, 32, 3))}
  hand = 2 * 9 * (3 * 16 * 32 * 48 + 8 * 32 * 4 * 6) + 2 * 9 * (32 * 8 * 4 * 6 + 32 * 3 * 32 * 48) + \
      2 * 9 * (3 * 16 * 16 * 16 + 8 * 32 * 2 * 2)
  assert flops.adain_flops(enc, dec, (32, 48), (16, 16)) == hand
  assert parse_image_size("3840x2160") == (2160, 3840) and parse_image_size("512") == (512, 512)
  with pytest.raises(NSTError, match="--adain_sizes"):
    parse_image_size("4k")


def test_tiled_timing_does_the_untiled_work():
  """The tiled eval that the harness times computes the same loss as the untiled one (same image, same targets)."""
  settings = BenchmarkSettings(warmup=0, repeats=1, content_layers=("relu2_2",),
                               style_layers=("relu1_1", "relu2_1"), tile_size=16)
  tiled = jax_timing.time_tiled(settings, (32, 43))
  problem = build_problem(settings, (32, 43))
  untiled = float(jax.jit(problem.total_loss)(problem.x0, problem.inputs))
  assert tiled["tiles"] == 6 and tiled["eval"]["median_s"] > 0 and tiled["ms_per_megapixel"] > 0
  np.testing.assert_allclose(tiled["loss"], untiled, rtol=1e-4)
