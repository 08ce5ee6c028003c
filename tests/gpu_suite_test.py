"""`python -m experiments.benchmarks.gpu_suite --tiny`: every section of the GPU suite runs its code path on CPU (2
simulated devices for the sharded part), as CI runs it; and the bundle a GPU machine receives holds what the suite
reads."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory) -> tuple[dict, str]:
  out = tmp_path_factory.mktemp("gpu_suite") / "suite"
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2")
  proc = subprocess.run([sys.executable, "-m", "experiments.benchmarks.gpu_suite", "--tiny", "--out", str(out)],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(out.with_suffix(".json").read_text()), out.with_suffix(".md").read_text()


def test_every_section_runs(tiny_report):
  report, table = tiny_report
  assert report["tiny"] and list(report["sections"]) == ["gatys", "tiled", "sharded", "adain", "photoreal"]
  for name, part in report["sections"].items():
    result = part["result"]
    assert not (isinstance(result, dict) and ("error" in result or "skipped" in result)), (name, result)
  gatys = report["sections"]["gatys"]["result"]
  assert [(r["shape"], r["precision"]) for r in gatys] == [([24, 32], "fp32"), ([32, 48], "fp32"),
                                                            ([24, 32], "bf16"), ([32, 48], "bf16")]
  for row in gatys:
    assert row["jax"]["median_s"] > 0 and row["jax"]["evals_last_step"] >= 1 and np.isfinite(row["jax"]["final_loss"])
  if importlib.util.find_spec("torch"):  # the PyTorch reference is timed on the first row (the same path for all)
    assert gatys[0]["torch"]["median_s"] > 0 and gatys[0]["torch"]["evals_per_step"] >= 1
    assert all("skipped" in row["torch"] for row in gatys[1:]) and "not timed (--tiny)" in table
  tiled = report["sections"]["tiled"]["result"]
  assert tiled["tiles"] == 6 and tiled["iterations"] == 2 and tiled["final_terms"]["style"] > 0
  sharded = report["sections"]["sharded"]["result"]
  assert sharded["two_devices"]["devices"] == 2 and sharded["max_loss_rel_diff"] <= 1e-4
  adain = report["sections"]["adain"]["result"]
  assert [a["path"] for a in adain][:2] == ["whole image", "whole image"] and "tiles" in adain[2]["path"]
  assert all(a["output_finite"] for a in adain)
  photo = report["sections"]["photoreal"]["result"]
  assert photo["iterations"] == [2, 2] and photo["finite"]
  for needle in ("| Gatys (H×W) |", "| 32×48 | bf16 |", "- tiled: 32×48 on 1 device(s), 6 tiles",
                 "2 devices against 1", "| AdaIN (H×W) |", "- photoreal:", "| photoreal |"):
    assert needle in table, needle
