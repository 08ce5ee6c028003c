"""The command line end to end on unusual but valid inputs (grayscale, alpha, CMYK, 16-bit, EXIF-rotated, maps of
another size), its help, progress and warnings, and a few smoke tests in real processes.

The commands run in-process (`nst_jax.cli.main.main`, stdout and stderr captured), which is what the console
script calls. The weights are a tiny random VGG16 (conftest.py), so nothing is downloaded. Successful runs use
Adam, two steps and shallow layers: from `--init content` two Adam steps of 0.02 move no pixel by more than about
0.05, so the output must still look like the content, which checks that the content was decoded, composited and
rotated correctly.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cli_helpers import (ABSL_LOG_PREFIX, CONTENT_TOLERANCE, FAST, FAST_SYNTHESIS, FROM_CONTENT, REPO,
                         assert_one_line_error, expected_content, read_output, run_cli, run_process, write_seg)
from nst_jax.cli import command as command_module
from nst_jax.cli import main as cli_main
from nst_jax.io import image_io


def run_photoreal(cli_setup, output, style_seg: str, *extra: str):
  """A tiny, fast photoreal run (32 px, Adam, 2 + 1 iterations, shallow layers: none past relu2_1, whose conv2_2
  would only add compilation) with root/cseg.png as the content map and root/<style_seg> as the style map."""
  root = cli_setup["root"]
  return run_cli(cli_setup, "photoreal", "--content", str(root / "content.png"), "--style", str(root / "style.png"),
                 "--content_seg", str(root / "cseg.png"), "--style_seg", str(root / style_seg), "--output",
                 str(output), "--weights", str(cli_setup["weights"]), "--size", "32", "--optimizer", "adam",
                 "--learning_rate", "0.01", "--stage1_iterations", "2", "--stage2_iterations", "1",
                 "--smooth_radius", "2", "--style_layers", "relu1_1,relu2_1", "--content_layers", "relu2_1", *extra)


def test_photoreal_runs_both_stages_with_off_by_one_maps(cli_setup):
  root = cli_setup["root"]
  write_seg(root / "cseg.png", 25, 33)  # one pixel larger than the content, like the paper's pair 7
  write_seg(root / "sseg.png", 24, 32)
  output = root / "photo_ok.png"
  proc = run_photoreal(cli_setup, output, "sseg.png", "--save_stages")
  assert proc.returncode == 0, proc.stderr
  assert "2+1 iterations" in proc.stdout and "matting" in proc.stdout
  image = image_io.load_image(output)
  assert image.shape == (24, 32, 3) and np.all(np.isfinite(image))
  assert (root / "photo_ok_stage1.png").exists() and (root / "photo_ok_stage2.png").exists()


def test_photoreal_runs_in_tiles(cli_setup):
  """--tile_size sends both stages through the tiled engine (24x32 content in 2 x 2 tiles of 16 px), with a 16-bit
  TIFF output."""
  root = cli_setup["root"]
  write_seg(root / "cseg.png", 24, 32)
  output = root / "photo_tiled.tif"
  proc = run_photoreal(cli_setup, output, "cseg.png", "--tile_size", "16", "--tile_overlap", "4", "--output_bits", "16")
  assert proc.returncode == 0, proc.stderr
  assert "2+1 iterations, 4 tile(s) of 16+2*" in proc.stdout and "matting" in proc.stdout, proc.stdout
  with Image.open(output) as im:
    assert im.size == (32, 24) and tuple(im.tag_v2[258]) == (16, 16, 16)  # BitsPerSample: 16-bit RGB
  image = image_io.load_image(output)
  assert image.shape == (24, 32, 3) and np.all(np.isfinite(image))



# ----------------------------------------------------------------------------------------------------------------
# Unusual but valid inputs, end to end



def test_grayscale_content_rgba_style_and_intermediate_save(cli_setup, tmp_path):
  gray = np.zeros((30, 40), np.uint8)  # 40 wide, 30 tall -> 32 x 24
  gray[:, 20:] = 200
  gray[10:20, 5:15] = 90
  Image.fromarray(gray, mode="L").save(tmp_path / "gray.png")
  rgba = np.random.default_rng(1).integers(0, 256, (20, 24, 4), dtype=np.uint8)
  Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
  output = tmp_path / "result.png"
  proc = run_cli(cli_setup, "stylize", "--content", str(tmp_path / "gray.png"), "--style", str(tmp_path / "rgba.png"),
                 "--output", str(output), "--weights", str(cli_setup["weights"]), *FAST, *FROM_CONTENT,
                 "--save_every", "1")
  assert proc.returncode == 0, proc.stderr
  assert "Traceback" not in proc.stderr and f"wrote {output}" in proc.stdout
  result = read_output(output, (24, 32))
  expected = expected_content(tmp_path / "gray.png")
  assert np.abs(result - expected).max() < CONTENT_TOLERANCE
  assert np.abs(result[..., 0] - result[..., 2]).max() < 2 * CONTENT_TOLERANCE  # still (nearly) gray
  # Iteration 1 of 2 is saved as an intermediate; the last one is the result itself, not a duplicate.
  intermediate = read_output(tmp_path / "result_00001.png", (24, 32))
  assert np.abs(intermediate - expected).max() < CONTENT_TOLERANCE
  assert sorted(p.name for p in tmp_path.iterdir()) == ["gray.png", "result.png", "result_00001.png", "rgba.png"]


def test_exif_rotated_cmyk_jpeg_content_and_16bit_style(cli_setup, tmp_path):
  # Stored 40 wide x 20 tall, red (in CMYK) in the top-left quadrant, EXIF orientation 6 (rotate 90 degrees
  # clockwise to display): upright it is 20 x 40 with the red quadrant at the top right.
  stored = Image.new("CMYK", (40, 20), (0, 0, 0, 0))
  stored.paste((0, 255, 255, 0), (0, 0, 20, 10))
  exif = Image.Exif()
  exif[0x0112] = 6
  stored.save(tmp_path / "rotated_cmyk.jpg", quality=95, exif=exif)
  with Image.open(tmp_path / "rotated_cmyk.jpg") as im:
    assert im.mode == "CMYK" and im.getexif()[0x0112] == 6
  ramp = np.tile(np.linspace(0, 65535, 24).astype(np.uint16), (16, 1))
  Image.fromarray(ramp).save(tmp_path / "style16.png")
  output = tmp_path / "result.png"
  proc = run_cli(cli_setup, "stylize", "--content", str(tmp_path / "rotated_cmyk.jpg"), "--style",
                 str(tmp_path / "style16.png"), "--output", str(output), "--weights", str(cli_setup["weights"]), *FAST,
                 *FROM_CONTENT)
  assert proc.returncode == 0, proc.stderr
  result = read_output(output, (32, 16))  # taller than wide: the rotation was applied
  red, white = np.array([1.0, 0.0, 0.0]), np.array([1.0, 1.0, 1.0])
  quadrants = {"top-right": (result[1:15, 9:15], red), "top-left": (result[1:15, 1:7], white),
               "bottom-left": (result[17:31, 1:7], white), "bottom-right": (result[17:31, 9:15], white)}
  for name, (block, colour) in quadrants.items():
    assert np.abs(block.mean(axis=(0, 1)) - colour).max() < 0.1, (name, block.mean(axis=(0, 1)))


def test_highres_pyramid_tiles_16bit_tiff_exif_and_resume(cli_setup, tmp_path):
  """The tiled pyramid path end to end: EXIF-rotated content, 16-bit TIFF output, a checkpoint folder that a
  rerun finds complete (nothing left to run, the same image)."""
  stored = Image.new("RGB", (40, 20), (255, 255, 255))
  stored.paste((255, 0, 0), (0, 0, 20, 10))
  exif = Image.Exif()
  exif[0x0112] = 6
  stored.save(tmp_path / "rotated.jpg", quality=95, exif=exif)
  output = tmp_path / "result.tif"
  args = ["stylize", "--content", str(tmp_path / "rotated.jpg"), "--style", str(cli_setup["root"] / "style.png"),
          "--output", str(output), "--weights", str(cli_setup["weights"]), *FAST, *FROM_CONTENT, "--start_size", "16",
          "--tile_size", "16", "--output_bits", "16", "--checkpoint_dir", str(tmp_path / "ckpt")]
  proc = run_cli(cli_setup, *args)
  assert proc.returncode == 0, proc.stderr
  assert "8x16 (2 it, 1 tile(s)" in proc.stdout and "16x32 (1 it, 2 tile(s)" in proc.stdout, proc.stdout  # tiled top
  with Image.open(output) as im:
    assert im.size == (16, 32) and tuple(im.tag_v2[258]) == (16, 16, 16)  # BitsPerSample: 16-bit RGB
  first = image_io.load_image(output)
  assert np.abs(first[1:15, 9:15].mean(axis=(0, 1)) - [1.0, 0.0, 0.0]).max() < 0.15  # red top-right: upright
  assert np.abs(first[17:31, 1:7].mean(axis=(0, 1)) - 1.0).max() < 0.15
  again = run_cli(cli_setup, *args)
  assert again.returncode == 0 and "nothing left to run" in again.stdout, again.stdout + again.stderr
  np.testing.assert_array_equal(image_io.load_image(output), first)


def test_16bit_png_content_and_palette_style(cli_setup, tmp_path):
  ramp = np.tile(np.linspace(0, 65535, 40).astype(np.uint16), (20, 1))  # 40 x 20 -> 32 x 16
  ramp[:, :8] = 700  # dark but not black: 8-bit misreading (700 > 255) would clip it to white
  Image.fromarray(ramp).save(tmp_path / "content16.png")
  palette = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16) % 4, mode="P")  # 16 px: the minimum
  palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 0] + [0] * (252 * 3))
  palette.save(tmp_path / "palette.png", transparency=2)
  output = tmp_path / "result.png"
  proc = run_cli(cli_setup, "stylize", "--content", str(tmp_path / "content16.png"), "--style",
                 str(tmp_path / "palette.png"), "--output", str(output), "--weights", str(cli_setup["weights"]), *FAST,
                 *FROM_CONTENT)
  assert proc.returncode == 0, proc.stderr
  result = read_output(output, (16, 32))
  assert np.abs(result - expected_content(tmp_path / "content16.png")).max() < CONTENT_TOLERANCE
  assert result[4:12, 1:5].mean() < 700 / 65535 + CONTENT_TOLERANCE
  assert result[4:12, -4:].mean() > 1 - CONTENT_TOLERANCE


def test_synthesize_writes_a_texture_of_the_style_aspect(cli_setup, tmp_path):
  output = tmp_path / "texture.png"
  proc = run_cli(cli_setup, "synthesize", "--style", str(cli_setup["root"] / "style.png"), "--weights",
                 str(cli_setup["weights"]), "--output", str(output), *FAST_SYNTHESIS)
  assert proc.returncode == 0, proc.stderr
  with Image.open(output) as im:
    assert im.size == (32, 24)  # the 32x24 style's aspect at --size 32
    pixels = np.asarray(im, np.float32) / 255
  # Started from noise (the default init without content): two small steps leave a noise-like image.
  assert pixels.std() > 0.15



def test_adain_keeps_the_content_size_and_tiles_on_request(adain_cli_setup, tmp_path):
  whole, tiled = tmp_path / "whole.png", tmp_path / "tiled.png"
  for output, extra in ((whole, []), (tiled, ["--tile_size", "32"])):
    proc = run_cli(adain_cli_setup, "adain", *adain_cli_setup["args"], "--alpha", "0.5", "--output", str(output),
                   *extra)
    assert proc.returncode == 0, proc.stderr
  read_output(whole, (24, 32))  # no --size: the content's own 32x24
  read_output(tiled, (24, 32))


# ----------------------------------------------------------------------------------------------------------------
# What a new user meets: help, foreign flags, progress, plain lines, tiny contents, stretched masks



def test_help_lists_the_commands_and_exits_0(cli_setup):
  for flag in ("--help", "-h"):
    result = run_cli(cli_setup, flag)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "usage: python -m nst_jax COMMAND [flags]"
    for name in ("stylize", "synthesize", "photoreal", "adain", "wct", "train-wct"):
      assert any(line.split()[:1] == [name] for line in lines), (name, result.stdout)


@pytest.mark.parametrize("command, own, foreign", [
    ("stylize", ["--content", "--style_masks", "--style_loss", "--start_size", "--checkpoint_dir"],
     ["--alpha", "--content_seg", "--decoder"]),
    ("synthesize", ["--style", "--style_loss", "--tile_size"], ["--content", "--alpha"]),
    ("photoreal", ["--content_seg", "--matting_weight", "--stage2_iterations", "--tile_size", "--method", "--alpha",
                   "--decoders"], ["--style_masks", "--start_size", "--decoder"]),
    ("adain", ["--alpha", "--decoder", "--max_megapixels", "--style_masks"], ["--style_loss", "--iterations"]),
    ("wct", ["--alpha", "--decoders", "--levels", "--style_masks", "--style_scale"], ["--decoder", "--iterations"]),
    ("train-wct", ["--out_dir", "--levels", "--export", "--feature_weight"], ["--content", "--alpha"]),
])
def test_each_command_help_shows_its_own_flags_only(cli_setup, command, own, foreign):
  for flag in ("--help", "--helpfull"):
    result = run_cli(cli_setup, command, flag)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    text = result.stdout
    assert text.startswith(f"usage: python -m nst_jax {command} "), text[:200]
    flags_shown = re.findall(r"^  (--\w+)", text, flags=re.M)
    # Every flag of the command, each once (none left out of the help's sections).
    assert sorted(flags_shown) == sorted(f"--{name}" for name in command_module.flag_names(cli_main.load(command)))
    for name in own:
      assert name in flags_shown, (name, flags_shown)
    for name in foreign + ["--logtostderr", "--flagfile", "--only_check_args"]:  # no other command's, no absl's
      assert name not in flags_shown, (name, flags_shown)
    assert "[default: " in text  # every flag with a default says it


def test_config_fields_in_library_errors_become_the_flags_that_set_them():
  """Library errors name config fields (`HighresConfig.tile_size`, `PhotorealConfig.stage1_size`); the commands'
  errors name the flags instead, and every field of the tile and photoreal settings has a flag of its command."""
  from nst_jax.cli import field_flags, photoreal as photoreal_cli, stylize as stylize_cli
  from nst_jax.errors import NSTError
  from nst_jax.highres.highres_config import HighresConfig
  from nst_jax.methods.photoreal import PhotorealConfig
  assert field_flags.flag_message("HighresConfig.start_size 64 is larger than StylizeConfig.size 32") == (
      "--start_size 64 is larger than --size 32")
  assert field_flags.flag_message("PhotorealConfig.optimizer_options: bad; OtherConfig.x") == (
      "--optimizer_args: bad; OtherConfig.x")
  from nst_jax import optim
  for config, cmd in ((HighresConfig, stylize_cli.STYLIZE), (PhotorealConfig, photoreal_cli.COMMAND),
                      (optim.RunSettings, stylize_cli.STYLIZE)):
    defined = {f"--{name}" for name in command_module.flag_names(cmd)}
    missing = [field.name for field in dataclasses.fields(config)
               if field_flags.FIELD_FLAGS[f"{config.__name__}.{field.name}"] not in defined]
    assert not missing, (config.__name__, missing)
  with pytest.raises(NSTError, match="HighresConfig.tile_size must be >= 0"):
    HighresConfig(tile_size=-1)
  with pytest.raises(NSTError, match="^--tile_size must be >= 0"):
    field_flags.fields_as_flags(lambda: HighresConfig(tile_size=-1))()
  with pytest.raises(NSTError, match="^--normalize_gradients is for first-order"):
    field_flags.fields_as_flags(lambda: optim.make_optimizer("lbfgs", normalize_gradients=True))()
  # Image inputs, which library messages name in backquotes, become their flags too.
  assert field_flags.flag_message("`style_masks` has 2 mask(s); `depth`, `other`") == (
      "--style_masks has 2 mask(s); --depth, `other`")
  input_flags = {name for cmd in (stylize_cli.STYLIZE, photoreal_cli.COMMAND) for name in command_module.flag_names(cmd)}
  assert set(field_flags.INPUTS) <= input_flags, set(field_flags.INPUTS) - input_flags
  with pytest.raises(NSTError, match="^give both --content_seg and --style_seg"):
    from nst_jax.losses import segmentation  # pylint: disable=import-outside-toplevel
    field_flags.fields_as_flags(lambda: segmentation.match(None, np.ones((4, 4, 3)), content_shape=(4, 4),
                                                           style_shape=(4, 4)))()


def test_progress_bar_in_place_with_eta_and_plain_lines(cli_setup, tmp_path):
  output = tmp_path / "progress.png"
  root = cli_setup["root"]
  args = ["stylize", "--content", str(root / "content.png"), "--style", str(root / "style.png"), "--output",
          str(output), "--weights", str(cli_setup["weights"]), *FAST, "--iterations", "6", "--log_every", "2"]
  result = run_cli(cli_setup, *args)
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith(f"wrote {output} (32x24, 6 iterations"), result.stdout
  lines = result.stderr.split("\n")
  assert lines[0].startswith("adam compiling the loss and its gradient"), lines[0]
  assert lines[1].startswith("adam compiled and ran 2 iteration(s) in "), lines[1]
  # tqdm redraws one line ('\r'), with the count, the loss terms and elapsed<remaining (the ETA).
  bar = lines[2]
  assert bar.count("\r") >= 3 and "6/6" in bar and "4/6" in bar, repr(bar)
  assert re.search(r"\[\d\d:\d\d<\d\d:\d\d", bar) and "style=" in bar and "it/s" in bar, repr(bar)
  for line in (result.stdout + result.stderr).replace("\r", "\n").splitlines():
    assert not ABSL_LOG_PREFIX.match(line), line


def test_mask_of_another_aspect_ratio_is_stretched_with_a_warning(cli_setup, tmp_path):
  Image.new("L", (40, 40), 255).save(tmp_path / "square.png")    # the content is 32x24: another aspect ratio
  Image.new("L", (64, 48), 255).save(tmp_path / "twice.png")     # twice the content's size: same aspect, no warning
  root = cli_setup["root"]
  for mask, warned in (("square.png", True), ("twice.png", False)):
    output = tmp_path / f"masked_{mask}"
    result = run_cli(cli_setup, "stylize", "--content", str(root / "content.png"), "--style", str(root / "style.png"),
                     "--style_masks", str(tmp_path / mask), "--output", str(output), "--weights",
                     str(cli_setup["weights"]), *FAST)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    if warned:
      assert len(warnings) == 1 and mask in warnings[0] and "40x40" in warnings[0] and "32x24" in warnings[0] \
          and "stretched" in warnings[0], result.stderr
    else:
      assert warnings == [], result.stderr
    assert output.exists()


# ----------------------------------------------------------------------------------------------------------------
# Smoke tests in real processes: the entry point, one error, one run


def test_process_help_and_error(cli_setup):
  help_ = run_process(cli_setup, "--help")
  assert help_.returncode == 0 and "commands:" in help_.stdout and "adain" in help_.stdout, help_.stderr
  # The list of commands imports no JAX: it answers at once.
  probe = subprocess.run([sys.executable, "-c", "import sys; from nst_jax.cli import main; main.main(['--help']); "
                          "print('jax' in sys.modules)"], cwd=REPO, capture_output=True, text=True, timeout=60)
  assert probe.stdout.strip().endswith("False"), probe.stdout + probe.stderr
  assert_one_line_error(run_process(cli_setup, "stylize", "--size", "0", "--weights", str(cli_setup["weights"])),
                        "--size", "got 0")
  assert_one_line_error(run_process(cli_setup), "expected one command", "(none)")


def test_adain_command_imports_no_optimisation_machinery():
  """`adain` is meant to answer in seconds: its module must not import optax, the high-resolution engine, the Gatys
  method or scipy.ndimage (the demo painting), which together cost 0.4-0.5 s of start-up (measured)."""
  heavy = ("optax", "nst_jax.highres", "nst_jax.methods.gatys", "nst_jax.engines.optimize", "nst_jax.demo",
           "scipy.ndimage")
  probe = subprocess.run([sys.executable, "-c", "import sys, nst_jax.cli.adain; print(sorted(m for m in sys.modules "
                          f"if m.startswith({heavy!r})))"], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert probe.returncode == 0, probe.stderr
  assert probe.stdout.strip() == "[]", probe.stdout


@pytest.mark.slow
def test_process_run_writes_the_image(cli_setup, tmp_path):
  output = tmp_path / "process.png"
  root = cli_setup["root"]
  proc = run_process(cli_setup, "stylize", "--content", str(root / "content.png"), "--style", str(root / "style.png"),
                     "--output", str(output), "--weights", str(cli_setup["weights"]), *FAST, *FROM_CONTENT)
  assert proc.returncode == 0, proc.stderr
  assert f"wrote {output}" in proc.stdout and "Traceback" not in proc.stderr
  assert np.abs(read_output(output, (24, 32)) - expected_content(cli_setup["root"] / "content.png")).max() \
      < CONTENT_TOLERANCE
