"""The training commands of the command line: `train adain` trains, resumes, exports and fine-tunes a decoder in this
process, `train wct` and its old name `train-wct` are one command, and `--help` names them."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from cli_helpers import run_cli
from nst_jax import demo
from nst_jax.cli import command as command_module, main as cli_main
from nst_jax.io import compile_cache, image_io
from nst_jax.models import adain_decoder


def test_help_names_the_training_commands_and_the_deprecated_one():
  for args in (["--help"], ["train", "--help"]):
    result = run_cli({"env": {}}, *args)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert any(line.split()[:2] == ["train", "adain"] for line in lines), result.stdout
    assert any(line.split()[:2] == ["train", "wct"] for line in lines), result.stdout
    assert any(line.split()[:2] == ["train-wct", "deprecated:"] for line in lines), result.stdout
    assert any(line.split()[:1] == ["weights"] for line in lines), result.stdout
  bare = run_cli({"env": {}}, "train")
  assert bare.returncode == 2 and bare.stderr.startswith("error: expected one command from "), bare.stderr
  assert "train adain" in bare.stderr and "train-wct" not in bare.stderr


@pytest.mark.parametrize("words", [["train", "adain"], ["train", "wct"], ["train-wct"]])
def test_training_help_shows_every_flag_once(words):
  result = run_cli({"env": {}}, *words, "--help")
  assert result.returncode == 0 and result.stderr == "", result.stderr
  assert result.stdout.startswith(f"usage: python -m nst_jax {' '.join(words)} "), result.stdout[:200]
  shown = re.findall(r"^  (--\w+)", result.stdout, flags=re.M)
  expected = command_module.flag_names(cli_main.load(cli_main.command_name(words)))
  assert sorted(shown) == sorted(f"--{name}" for name in expected)
  if words == ["train-wct"]:
    assert "Deprecated name of `python -m nst_jax train wct`" in result.stdout


def test_a_foreign_training_flag_names_its_command(cli_setup):
  result = run_cli(cli_setup, "adain", "--export_only")
  assert result.returncode == 2 and "(a flag of train adain)" in result.stderr, result.stderr


def train_adain(tmp_path, *flags):
  # The run's compiled executables go to the test session's cache, so the later runs load the step the first
  # compiled (the same shapes and program).
  env = {compile_cache.ENV: os.environ.get(compile_cache.ENV, str(tmp_path / "xla"))}
  return run_cli({"env": env}, "train", "adain", "--content_dirs", str(tmp_path / "c"), "--style_dirs",
                 str(tmp_path / "s"), "--nohighres", "--nodemo_images", "--crop", "32", "--batch", "2", "--width", "4",
                 "--lr", "0.01", *flags)


@pytest.mark.slow
def test_train_adain_trains_resumes_exports_and_fine_tunes(default_weights, content, tmp_path):
  del default_weights  # the command loads hed-vgg16 by name
  image_io.save_image(tmp_path / "c" / "a.png", content)
  image_io.save_image(tmp_path / "s" / "b.png", demo.swirl_painting(64, seed=1))
  first = train_adain(tmp_path, "--steps", "2", "--out_dir", str(tmp_path / "run1"), "--export",
                      str(tmp_path / "d1.npz"))
  assert first.returncode == 0, first.stderr[-2000:]
  history = json.loads((tmp_path / "run1" / "metrics.json").read_text())["history"]
  assert [h["step"] for h in history] == [2]
  d1 = adain_decoder.load_decoder(tmp_path / "d1.npz")
  assert d1.info["steps"] == 2 and d1.info["command"].startswith("python -m nst_jax train adain --")
  # The checkpoint keeps the run's configuration: the same flags with more steps go on from step 2.
  resumed = train_adain(tmp_path, "--steps", "3", "--out_dir", str(tmp_path / "run1"))
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  history = json.loads((tmp_path / "run1" / "metrics.json").read_text())["history"]
  assert [h["step"] for h in history] == [2, 3]
  second = train_adain(tmp_path, "--steps", "1", "--min_scale", "1", "--max_scale", "3", "--init_decoder",
                       str(tmp_path / "d1.npz"), "--out_dir", str(tmp_path / "run2"), "--export",
                       str(tmp_path / "d2.npz"))
  assert second.returncode == 0, second.stderr[-2000:]
  d2 = adain_decoder.load_decoder(tmp_path / "d2.npz")
  assert d2.info["init_decoder"] == str(tmp_path / "d1.npz") and d2.info["steps"] == 1
  assert d2.info["init_decoder_info"]["steps"] == 2 and d2.info["max_scale"] == 3.0
  # One Adam step from d1 moves every parameter by at most lr (plus fp16 rounding); a fresh decoder would not.
  moved = np.concatenate([np.ravel(d2.params[k] - d1.params[k]) for k in d1.params])
  assert np.max(np.abs(moved)) < 0.011 and np.mean(np.abs(moved)) > 0.002, (np.max(np.abs(moved)),
                                                                             np.mean(np.abs(moved)))
  bad = train_adain(tmp_path, "--steps", "1", "--init_decoder", str(tmp_path / "missing.npz"), "--out_dir",
                    str(tmp_path / "run3"))
  assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
      f"error: --decoder {str(tmp_path / 'missing.npz')!r}: no such decoder file or name"], bad.stderr
