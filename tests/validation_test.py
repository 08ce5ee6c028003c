"""The checks of `nst_jax.cli.validation` and `nst_jax.cli.output_guard` on their own, including what the
command-line battery (bad_input_test.py) cannot set up as root: folders that cannot be written."""

from __future__ import annotations

import os

import numpy as np
import pytest

from nst_jax.cli import output_guard, validation
from nst_jax.errors import NSTError


def test_min_side_counts_the_poolings_before_the_deepest_layer():
  assert validation.min_side("vgg16", ["relu1_1"]) == validation.MIN_WORKING_SIDE
  assert validation.min_side("vgg16", ["relu1_1", "relu3_1"]) == 4
  assert validation.min_side("vgg16", ["relu5_1"]) == 16
  assert validation.min_side("vgg19", ["relu2_1@4"]) == 8


def test_working_size_names_the_flag_and_the_size_that_works():
  with pytest.raises(NSTError, match=r"--size 32 makes the content image 'x' \(1024x16 px\) 32x1 px.*at least 1024"):
    validation.check_working_size((16, 1024, 3), 32, what="content image 'x'", minimum=16)
  validation.check_working_size((16, 1024, 3), 1024, what="content image 'x'", minimum=16)


def test_style_working_size_uses_each_styles_long_side():
  styles = [np.zeros((24, 32, 3)), np.zeros((8, 64, 3))]
  validation.check_style_working_sizes(styles[:1], ["a.png"], [32], minimum=16)
  with pytest.raises(NSTError, match="'b.png' becomes 64x8 px"):
    validation.check_style_working_sizes(styles, ["a.png", "b.png"], [32, 64], minimum=16)


@pytest.mark.parametrize("value", [-1.0, 0.0])
def test_learning_rate_must_be_positive(value):
  with pytest.raises(NSTError, match="--learning_rate must be a positive number"):
    validation.check_learning_rate(value)
  validation.check_learning_rate(None)


def test_writable_folder(tmp_path, monkeypatch):
  (tmp_path / "file").write_text("x")
  deeper = tmp_path / "new" / "deeper"
  assert validation.check_writable_folder(deeper, "--checkpoint_dir") == deeper
  with pytest.raises(NSTError, match="--checkpoint_dir .* is a file, not a folder"):
    validation.check_writable_folder(tmp_path / "file", "--checkpoint_dir")
  with pytest.raises(NSTError, match="--style_cache .*file.* is a file, not a folder"):
    validation.check_writable_folder(tmp_path / "file" / "sub", "--style_cache")
  # Root writes anywhere, so a read-only folder is simulated.
  monkeypatch.setattr(os, "access", lambda path, mode: False)
  with pytest.raises(NSTError, match="is not writable"):
    validation.check_writable_folder(tmp_path / "new", "--checkpoint_dir")


def test_output_guard(tmp_path):
  (tmp_path / "in.png").write_bytes(b"x")
  (tmp_path / "out_00010.png").write_bytes(b"x")
  os.link(tmp_path / "in.png", tmp_path / "hard.png")
  inputs = [("content", tmp_path / "in.png"), ("style", tmp_path / "out_00010.png")]
  output_guard.check_output(str(tmp_path / "other.png"), inputs)
  with pytest.raises(NSTError, match="--output .* is the --content file"):
    output_guard.check_output(str(tmp_path / "hard.png"), inputs)
  with pytest.raises(NSTError, match="intermediate images named like the --style file"):
    output_guard.check_output(str(tmp_path / "out.png"), inputs)
  with pytest.raises(NSTError, match="is a folder"):
    output_guard.check_output(str(tmp_path), inputs)
  values = {"content": str(tmp_path / "in.png"), "style": ["hed-vgg16", str(tmp_path / "missing.png")],
            "init": "colors"}
  assert list(output_guard.flag_paths(values, ["content", "style", "init"])) == [("content", tmp_path / "in.png")]
