"""No wasted compilation: nothing computed from shapes alone is left to XLA's constant folding (which at the default
sizes took seconds and printed "slow_operation_alarm ... Constant folding an instruction is taking > 8s" with an
HLO dump), and no command prints XLA's or absl's messages. The commands run in this process on tiny images; XLA
writes to the stderr file descriptor, which `capfd` captures."""

from __future__ import annotations

import re

import jax.numpy as jnp
import numpy as np
import pytest

from cli_helpers import run_cli
from nst_jax.methods import photoreal
from nst_jax.models import wct_decoder

XLA_NOISE = re.compile(r"slow_operation_alarm|Constant folding|constant_folding|HloModule|^[IWEF]\d{4} ", re.M)


def test_window_counts_are_the_in_image_taps():
  counts = photoreal.window_counts(5, 7, 2)
  ones = np.pad(np.ones((5, 7)), 2)
  expected = sum(ones[dy:dy + 5, dx:dx + 7] for dy in range(5) for dx in range(5))
  np.testing.assert_array_equal(counts, expected)


def test_local_affine_sums_windows_of_the_images_only():
  """One window sum per box mean (four in `local_affine`), none of a constant image of ones."""
  image = jnp.zeros((32, 24, 3), jnp.float32)
  text = photoreal.local_affine.lower(output=image, content=image, eps=1e-3, radius=8).as_text()
  assert text.count("reduce_window") == 4, text.count("reduce_window")


@pytest.mark.parametrize("command, extra", [
    ("stylize", ["--iterations", "1", "--optimizer", "adam", "--style_layers", "relu1_1,relu2_1",
                 "--content_layers", "relu1_2"]),
    ("photoreal", ["--iterations", "1", "--optimizer", "adam", "--style_layers", "relu1_1,relu2_1",
                   "--content_layers", "relu1_2"]),
    ("adain", ["--decoder", "{root}/decoder.npz"]),
    ("wct", ["--decoders", "{tmp}/decoders.npz", "--levels", "relu2_1,relu1_1"]),
])
def test_commands_print_no_compiler_messages(adain_cli_setup, tmp_path, capfd, command, extra):
  root = adain_cli_setup["root"]
  output = tmp_path / "out.png"
  if command == "wct":
    wct_decoder.save_decoders(tmp_path / "decoders.npz", wct_decoder.DecoderSet(
        {layer: wct_decoder.LevelDecoder(wct_decoder.init_decoder("vgg16", layer, 4, seed=1), 4)
         for layer in ("relu2_1", "relu1_1")}, "vgg16", "0" * 64, "test"))
  proc = run_cli(adain_cli_setup, command, "--content", str(root / "content.png"), "--style", str(root / "style.png"),
                 "--weights", str(adain_cli_setup["weights"]), "--output", str(output), "--size", "32",
                 *(a.format(root=root, tmp=tmp_path) for a in extra))
  assert proc.returncode == 0, proc.stderr
  native = capfd.readouterr().err  # what C++ wrote to file descriptor 2
  assert not XLA_NOISE.search(native + proc.stderr), native + proc.stderr
