"""The `wct` and `train wct` commands, run in-process on tiny images with a random encoder: training, resuming
and exporting decoders, then stylising with the exported file and every control; bad input ends in one line."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nst_jax.cli import main as cli_main
from nst_jax.methods.wct import train as wct_train
from nst_jax.models import wct_decoder


@pytest.fixture(scope="module")
def trained(cli_setup, tmp_path_factory):
  """A two-level decoder file made by `train wct` from tiny folders of photos and paintings."""
  root = tmp_path_factory.mktemp("wct_cli")
  rng = np.random.default_rng(1)
  for folder in ("photos", "paintings"):
    (root / folder).mkdir()
    for i in range(3):
      Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / folder / f"{i}.png")
  return root


def run(monkeypatch, cli_setup, *args: str) -> int:
  for key, value in cli_setup["env"].items():
    monkeypatch.setenv(key, value)
  return cli_main.main(list(args))


def train_args(root, cli_setup, *extra):
  return ["train", "wct", "--out_dir", str(root / "run"), "--levels", "relu2_1,relu1_1", "--width", "4", "--crop", "16",
          "--batch", "1", "--content_dirs", str(root / "photos"), "--style_dirs", str(root / "paintings"),
          "--weights", str(cli_setup["weights"]), *extra]


def test_train_resume_export_then_stylize(monkeypatch, cli_setup, trained, tmp_path, capsys):
  root = trained
  assert run(monkeypatch, cli_setup, *train_args(root, cli_setup, "--steps", "2,2")) == 0
  assert wct_train.read_checkpoint_meta(root / "run" / "relu2_1" / "checkpoint.npz")["step"] == 2
  assert run(monkeypatch, cli_setup, *train_args(root, cli_setup, "--steps", "3,3")) == 2  # other steps: refused
  assert "steps=2" in capsys.readouterr().err
  decoders = tmp_path / "decoders.npz"
  assert run(monkeypatch, cli_setup, *train_args(root, cli_setup, "--steps", "2,2", "--export", str(decoders),
                                                 "--default_levels", "relu1_1")) == 0
  loaded = wct_decoder.load_decoders(decoders)
  assert set(loaded.levels) == {"relu2_1", "relu1_1"} and loaded.levels["relu2_1"].info["step"] == 2
  assert loaded.info["default_levels"] == ["relu1_1"]
  # A new run started from the exported file continues at its step with its parameters.
  seeded = root / "seeded"
  assert run(monkeypatch, cli_setup, *train_args(root, cli_setup, "--steps", "3", "--init_decoders", str(decoders),
                                                 "--out_dir", str(seeded), "--levels", "relu1_1")) == 0
  assert wct_train.read_checkpoint_meta(seeded / "relu1_1" / "checkpoint.npz")["step"] == 3
  content = cli_setup["root"] / "content.png"
  style = cli_setup["root"] / "style.png"
  Image.fromarray(np.full((24, 32), 255, np.uint8)).save(tmp_path / "mask.png")
  common = ["--content", str(content), "--weights", str(cli_setup["weights"]), "--decoders", str(decoders)]
  capsys.readouterr()
  assert run(monkeypatch, cli_setup, "wct", *common, "--output", str(tmp_path / "d.png"), "--alpha", "0.5,1") == 2
  assert "one per level (1: relu1_1)" in capsys.readouterr().err  # the file's default levels: relu1_1 alone
  for extra in (["--alpha", "0.5", "--style_blend", "1,2"],
                ["--style_masks", f"{tmp_path}/mask.png,{tmp_path}/mask.png", "--preserve_colors", "luminance",
                 "--style_scale", "2", "--size", "20", "--passes", "2,1"]):
    styles = f"{style},{style}" if any(f.startswith("--style_") and f != "--style_scale" for f in extra) else str(style)
    out = tmp_path / f"out{len(extra)}.png"
    levels = [] if "--alpha" in extra else ["--levels", "relu2_1,relu1_1"]
    assert run(monkeypatch, cli_setup, "wct", *common, "--style", styles, "--output", str(out), *levels,
               *extra) == 0
    size = (20, 15) if "--size" in extra else (32, 24)
    assert Image.open(out).size == size


@pytest.mark.parametrize("extra, message", [
    (["--levels", "relu9_1"], "--levels"),
    (["--levels", "relu2_1"], "no decoder for relu2_1"),
    (["--alpha", "0.5,0.5,0.5"], "--alpha needs one value or one per level"),
    (["--alpha", "2"], "--alpha values must be in [0, 1]"),
    (["--decoders", "no-such-decoders"], "no such WCT decoder file"),
    (["--style_scale", "0"], "--style_scale"),
    (["--passes", "0"], "--passes needs one value or one per level"),
])
def test_bad_input_is_one_line(monkeypatch, cli_setup, capsys, tmp_path, extra, message):
  path = tmp_path / "d.npz"
  wct_decoder.save_decoders(path, wct_decoder.DecoderSet(
      {"relu1_1": wct_decoder.LevelDecoder(wct_decoder.init_decoder("vgg16", "relu1_1", 4), 4)}, "vgg16", "0" * 64,
      "test"))
  args = ["wct", "--content", str(cli_setup["root"] / "content.png"), "--style", str(cli_setup["root"] / "style.png"),
          "--weights", str(cli_setup["weights"]), "--output", str(tmp_path / "o.png"), "--decoders", str(path),
          *extra]
  assert run(monkeypatch, cli_setup, *args) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: ") and message in err and "\n" not in err, err


def test_style_cache_and_tiles(monkeypatch, cli_setup, tmp_path):
  path = tmp_path / "d.npz"
  wct_decoder.save_decoders(path, wct_decoder.DecoderSet(
      {layer: wct_decoder.LevelDecoder(wct_decoder.init_decoder("vgg16", layer, 4, seed=1), 4)
       for layer in ("relu2_1", "relu1_1")}, "vgg16", "0" * 64, "test"))
  cache = tmp_path / "styles"
  args = ["wct", "--content", str(cli_setup["root"] / "content.png"), "--style", str(cli_setup["root"] / "style.png"),
          "--weights", str(cli_setup["weights"]), "--decoders", str(path), "--style_cache", str(cache)]
  outs = [tmp_path / f"{i}.png" for i in range(3)]
  assert run(monkeypatch, cli_setup, *args, "--output", str(outs[0])) == 0
  entries = sorted(cache.glob("*.npz"))
  assert len(entries) == 1
  assert run(monkeypatch, cli_setup, *args, "--output", str(outs[1])) == 0  # from the cache
  assert sorted(cache.glob("*.npz")) == entries
  np.testing.assert_array_equal(np.asarray(Image.open(outs[0])), np.asarray(Image.open(outs[1])))
  assert run(monkeypatch, cli_setup, *args, "--output", str(outs[2]), "--tile_size", "32") == 0
  tiled = np.asarray(Image.open(outs[2]), np.float32)
  assert tiled.shape == (24, 32, 3)


def test_unpooling_decoders_train_from_nearest_ones_and_export(monkeypatch, cli_setup, trained, tmp_path, capsys):
  init = tmp_path / "nearest.npz"
  wct_decoder.save_decoders(init, wct_decoder.DecoderSet(
      {"relu2_1": wct_decoder.LevelDecoder(wct_decoder.init_decoder("vgg16", "relu2_1", 4), 4, info={"step": 50})},
      "vgg16", "0" * 64, "test"))
  args = train_args(trained, cli_setup, "--out_dir", str(tmp_path / "run"), "--levels", "relu2_1", "--steps", "1",
                    "--upsampling", "unpool")
  assert run(monkeypatch, cli_setup, *args, "--init_decoders", str(init)) == 0
  assert wct_train.read_checkpoint_meta(tmp_path / "run" / "relu2_1" / "checkpoint.npz")["step"] == 1  # 0, then 1
  exported = tmp_path / "photowct.npz"
  assert run(monkeypatch, cli_setup, *args, "--export", str(exported)) == 0
  assert wct_decoder.load_decoders(exported).levels["relu2_1"].upsampling == "unpool"
  capsys.readouterr()
  assert run(monkeypatch, cli_setup, "wct", "--content", str(cli_setup["root"] / "content.png"), "--style",
             str(cli_setup["root"] / "style.png"), "--weights", str(cli_setup["weights"]), "--decoders",
             str(exported), "--output", str(tmp_path / "o.png")) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: ") and "PhotoWCT" in err and "\n" not in err, err
