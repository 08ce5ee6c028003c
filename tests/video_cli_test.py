"""The `video` command in-process on a tiny generated pan: Gatys with the temporal term (frames folder in, mp4
out, resumed from its state folder), AdaIN with the consistency pass, --stabilize_only, every bad input in one line
before any work, and JAX's logging left as it was. A random VGG16 and a random AdaIN decoder (conftest's cli_setup,
adain_cli_setup)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from absl import flags

from cli_helpers import assert_one_line_error, run_cli
from nst_jax import demo
from nst_jax.cli import video as video_cli
from nst_jax.io import image_io, video as video_io
from nst_jax.video import consistency, measures, reliability

SIZE, VELOCITY, FRAMES = (32, 40), (2, 1), 3
GATYS = ["video", "--method", "gatys", "--size", "40", "--iterations", "3", "--iterations_first", "3",
         "--optimizer", "adam", "--content_layers", "relu1_2", "--style_layers", "relu1_1,relu2_1"]


@pytest.fixture(scope="module")
def pan(tmp_path_factory):
  """(a folder of the pan's frames, the frames, backward flows, masks)."""
  root = tmp_path_factory.mktemp("pan")
  photo = image_io.resize_long_side(demo.default_content(), 64)
  frames, velocity = demo.camera_pan(photo, frames=FRAMES, size=SIZE, velocity=VELOCITY)
  video_io.write_frames(root / "frames", frames)
  backward = np.broadcast_to(-velocity, (FRAMES - 1, *SIZE, 2)).astype(np.float32)
  masks = np.asarray(reliability.clip_reliability(-backward, backward))
  return root / "frames", video_io.read_frames(root / "frames").frames, backward, masks


def test_help_says_audio_is_not_kept(cli_setup):
  result = run_cli(cli_setup, "video", "--help")
  assert result.returncode == 0 and "Audio is not kept" in result.stdout and "--temporal_frames" in result.stdout


def test_gatys_clip_end_to_end_then_resumed_from_its_state(cli_setup, pan, tmp_path):
  folder, frames, _, _ = pan
  common = [*GATYS, "--content", str(folder), "--style", str(cli_setup["root"] / "style.png"),
            "--weights", str(cli_setup["weights"]), "--temporal_frames", "1,2", "--state_dir", str(tmp_path / "st")]
  result = run_cli(cli_setup, *common, "--output", str(tmp_path / "out.mp4"))
  assert result.returncode == 0, result.stderr
  written = video_io.read_frames(tmp_path / "out.mp4").frames
  assert written.shape == frames.shape
  saved = sorted((tmp_path / "st").glob("frame_*.png"))
  assert len(saved) == FRAMES and list((tmp_path / "st").glob("flows-*.npz"))
  mtimes = [p.stat().st_mtime_ns for p in saved]
  # A rerun finds every frame finished: nothing is computed again, and the frames written are the saved ones.
  result = run_cli(cli_setup, *common, "--output", str(tmp_path / "again"))
  assert result.returncode == 0, result.stderr
  assert [p.stat().st_mtime_ns for p in saved] == mtimes
  again = video_io.read_frames(tmp_path / "again").frames
  np.testing.assert_array_equal(again, np.stack([image_io.load_image(p) for p in saved]))
  # Other settings with the same state folder: refused, nothing lost.
  result = run_cli(cli_setup, *common[:-4], "--temporal_weight", "5", "--state_dir", str(tmp_path / "st"),
                   "--output", str(tmp_path / "other.mp4"))
  assert_one_line_error(result, "another run")
  assert [p.stat().st_mtime_ns for p in saved] == mtimes


def test_a_one_frame_clip_is_an_image(cli_setup, pan, tmp_path):
  folder = pan[0]
  result = run_cli(cli_setup, *GATYS, "--content", str(folder / "frame_00001.png"), "--weights",
                   str(cli_setup["weights"]), "--output", str(tmp_path / "one.png"))
  assert result.returncode == 0, result.stderr
  assert image_io.load_image(tmp_path / "one.png").shape == (*SIZE, 3)


def test_adain_with_the_consistency_pass_and_stabilize_only(adain_cli_setup, pan, tmp_path):
  folder, frames, backward, masks = pan
  args = ["video", "--method", "adain", "--content", str(folder), "--style",
          str(adain_cli_setup["root"] / "style.png"), "--weights", str(adain_cli_setup["weights"]), "--decoder",
          str(adain_cli_setup["root"] / "decoder.npz"), "--size", "40"]
  for flag, name in (("--noconsistency", "plain"), ("--consistency", "stable")):
    result = run_cli(adain_cli_setup, *args, flag, "--output", str(tmp_path / name))
    assert result.returncode == 0, result.stderr
  plain, stable = (video_io.read_frames(tmp_path / name).frames for name in ("plain", "stable"))
  assert measures.warping_error(stable, backward, masks) <= measures.warping_error(plain, backward, masks)
  # Clip-wide statistics: the whole clip at once, into the same state folder layout
  result = run_cli(adain_cli_setup, *args, "--clip_statistics", "--statistics_window", "2", "--noconsistency",
                   "--output", str(tmp_path / "together"))
  assert result.returncode == 0, result.stderr
  assert video_io.read_frames(tmp_path / "together").frames.shape == plain.shape
  # Another tool's flickering frames, stabilised alone
  gains = np.array([0.7, 1.25, 0.9])[:, None, None, None]
  video_io.write_frames(tmp_path / "flicker", np.clip(frames * gains, 0, 1))
  result = run_cli(adain_cli_setup, "video", "--stabilize_only", "--content", str(folder), "--stylized",
                   str(tmp_path / "flicker"), "--size", "40", "--output", str(tmp_path / "steady.mp4"))
  assert result.returncode == 0, result.stderr
  flicker = video_io.read_frames(tmp_path / "flicker").frames
  steady = video_io.read_frames(tmp_path / "steady.mp4").frames
  assert measures.warping_error(steady, backward, masks) < 0.3 * measures.warping_error(flicker, backward, masks)


def test_bad_input_is_one_line_before_any_work(cli_setup, pan, tmp_path):
  folder = pan[0]
  style = str(cli_setup["root"] / "style.png")
  base = [*GATYS, "--style", style, "--weights", str(cli_setup["weights"])]
  (tmp_path / "empty.mp4").write_bytes(b"")
  (tmp_path / "broken.mp4").write_bytes(b"not a video at all" * 10)
  mixed = tmp_path / "mixed"
  video_io.write_frames(mixed, np.zeros((2, 16, 16, 3), np.float32))
  image_io.save_image(mixed / "frame_00003.png", np.zeros((20, 16, 3), np.float32))
  cases = [
      (["--content", str(tmp_path / "empty.mp4"), "--output", str(tmp_path / "o.mp4")], "empty"),
      (["--content", str(tmp_path / "broken.mp4"), "--output", str(tmp_path / "o.mp4")], "broken.mp4"),
      (["--content", str(mixed), "--output", str(tmp_path / "o.mp4")], "size"),
      (["--content", str(folder), "--output", str(folder)], "input folder"),
      (["--content", str(folder), "--output", str(folder / "%04d.png")], "input folder"),
      (["--content", str(folder), "--output", str(tmp_path / "o.xyz")], "unknown video container"),
      (["--content", str(folder), "--output", str(tmp_path / "o.mp4"), "--temporal_frames", "0,1"],
       "--temporal_frames"),
      (["--content", str(folder), "--output", str(tmp_path / "o.mp4"), "--temporal_weight", "-1"],
       "--temporal_weight"),
      (["--content", str(folder), "--output", str(tmp_path / "o.mp4"), "--stabilize_only"], "--stylized"),
      (["--content", str(folder), "--output", str(tmp_path / "o.mp4"), "--state_dir", str(folder)], "--state_dir"),
      (["--content", str(folder), "--output", str(tmp_path / "o.mp4"), "--statistics_window", "-1"],
       "--statistics_window"),
  ]
  for args, needle in cases:
    assert_one_line_error(run_cli(cli_setup, *base, *args), needle)
  assert not list(tmp_path.glob("*.state")) and not (tmp_path / "o.mp4").exists()
  assert sorted(p.name for p in folder.iterdir()) == [f"frame_{i:05d}.png" for i in range(1, FRAMES + 1)]


def test_the_command_leaves_jax_logging_as_it_found_it(cli_setup, pan, tmp_path):
  # The command quietens JAX's logger while it runs; a test counting compile log lines afterwards still sees them.
  logger = logging.getLogger("jax")
  before = logger.level
  logger.setLevel(logging.INFO)
  try:
    assert_one_line_error(run_cli(cli_setup, *GATYS, "--content", str(pan[0]), "--output", str(tmp_path / "o.mp4"),
                                  "--temporal_weight", "-1"), "--temporal_weight")
    assert logger.level == logging.INFO
  finally:
    logger.setLevel(before)


def test_the_pass_weight_defaults_by_what_it_steadies():
  """Painted frames (wct, adain, --stabilize_only) get the stylised weight, photowct's photographs the weight
  calibrated on photographic flicker; a given --consistency_lambda wins."""
  fv = flags.FlagValues()
  video_cli.define_flags(fv)
  fv(["video"])
  for method, stabilize_only, want in (("adain", False, consistency.STYLIZED_LAMBDA),
                                       ("wct", False, consistency.STYLIZED_LAMBDA),
                                       ("photowct", False, consistency.DEFAULT_LAMBDA),
                                       ("photowct", True, consistency.STYLIZED_LAMBDA)):
    fv.method, fv.stabilize_only = method, stabilize_only
    assert video_cli.consistency_lambda(fv) == want, (method, stabilize_only)
  fv.consistency_lambda = 2.5
  assert video_cli.consistency_lambda(fv) == 2.5
