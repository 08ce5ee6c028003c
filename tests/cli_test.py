"""The command line (`python -m nst_jax COMMAND ...`) on bad and unusual inputs, and its help.

Every user mistake must end in exactly one stderr line `error: ...` and exit status 2, never a traceback; unusual
but valid images (grayscale, alpha, CMYK, 16-bit, EXIF-rotated) must go through end to end. The commands run
in-process (`nst_jax.cli.main.main`, stdout and stderr captured), which is what the console script calls; a few
smoke tests at the end start real processes. The weights are a tiny random VGG16 written here, so nothing is
downloaded. Successful runs use Adam, two steps and shallow layers: from `--init content` two Adam steps of 0.02
move no pixel by more than about 0.05, so the output must still look like the content, which checks that the
content was decoded, composited and rotated correctly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import pathlib
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from nst_jax.cli import main as cli_main
from nst_jax.io import image_io
from nst_jax.models import vgg
from nst_jax.models.preprocessing import CAFFE_VGG
from nst_jax.weights.format import VGGWeights, save_weights

REPO = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT_S = 180
# Two Adam steps from the content move each pixel by at most ~2 x learning rate; plus 8-bit rounding.
CONTENT_TOLERANCE = 0.08
FAST = ["--optimizer", "adam", "--iterations", "2", "--size", "32", "--content_layers", "relu1_2",
        "--style_layers", "relu1_1,relu2_1"]
ABSL_LOG_PREFIX = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d")  # absl's "I1201 13:52:35.262293 1401... file.py:12]"


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
  """A weights folder with a small random VGG16 and two ordinary input images."""
  root = tmp_path_factory.mktemp("cli")
  rng = np.random.default_rng(0)
  params = {name: {"kernel": (0.01 * rng.standard_normal(kernel)).astype(np.float32),
                   "bias": (0.01 * rng.standard_normal(bias)).astype(np.float32)}
            for name, (kernel, bias) in vgg.conv_shapes("vgg16").items()}
  weights_dir = root / "weights"
  save_weights(weights_dir / "fake.npz", VGGWeights(arch="vgg16", params=params, preprocessing=CAFFE_VGG,
                                                    source="test", source_sha256="0" * 64, extras={}))
  rgb = (rng.uniform(0, 1, (24, 32, 3)) * 255).astype(np.uint8)
  Image.fromarray(rgb).save(root / "content.png")
  Image.fromarray(rgb[::-1]).save(root / "style.png")
  env = {"NST_JAX_WEIGHTS_DIR": str(weights_dir)}
  return {"root": root, "weights": weights_dir / "fake.npz", "env": env}


@dataclasses.dataclass
class Result:
  returncode: int
  stdout: str
  stderr: str


@contextlib.contextmanager
def environment(values: dict[str, str]):
  saved = {k: os.environ.get(k) for k in values}
  os.environ.update(values)
  try:
    yield
  finally:
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v


def run_cli(setup: dict, *args: str) -> Result:
  """`python -m nst_jax ARGS` in this process: the exit status and what it wrote."""
  out, err = io.StringIO(), io.StringIO()
  with environment(setup["env"]), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code = cli_main.main(list(args))
  return Result(code, out.getvalue(), err.getvalue())


def run_process(setup: dict, *args: str, module: str = "nst_jax") -> subprocess.CompletedProcess:
  """The same in a new Python process, as a user starts it."""
  # Tiny images: the CPU is fastest to start, and probing for accelerators would only cost start-up time.
  env = dict(os.environ, **setup["env"], JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=TIMEOUT_S, check=False)


def assert_one_line_error(proc, *needles: str) -> str:
  assert "Traceback" not in proc.stderr, proc.stderr
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert len(lines) == 1, proc.stderr
  assert lines[0].startswith("error: "), proc.stderr
  for needle in needles:
    assert needle in lines[0], (needle, lines[0])
  assert proc.returncode == 2, (proc.returncode, proc.stderr)
  return lines[0]


# ----------------------------------------------------------------------------------------------------------------
# User mistakes


# (id, extra arguments, strings the error line must contain); {root} is the fixture's folder.
BAD_INPUTS = [
    ("missing-content", ["--content", "{root}/nope.jpg"], ["content image", "{root}/nope.jpg", "does not exist"]),
    ("non-image-content", ["--content", "{root}/notes.png"], ["content image", "{root}/notes.png", "not an image"]),
    ("unknown-output-extension", ["--output", "{root}/out.xyz"], ["{root}/out.xyz", "unknown image extension"]),
    ("size-zero", ["--size", "0"], ["--size", "got 0"]),
    ("size-negative", ["--size", "-5"], ["--size", "got -5"]),
    ("size-absurd", ["--size", "10000000"], ["smaller --size", "GiB"]),
    ("unknown-style-layer", ["--style_layers", "relu9_9"], ["--style_layers", "relu9_9"]),
    ("unknown-content-layer", ["--content_layers", "nope"], ["--content_layers", "'nope'"]),
    ("zero-iterations", ["--iterations", "0"], ["--iterations", "got 0"]),
    ("unknown-optimizer", ["--optimizer", "nonsense"], ["optimizer", "nonsense"]),
    ("missing-init", ["--init", "{root}/missing.png"], ["--init image", "{root}/missing.png"]),
    ("missing-weights-file", ["--weights", "{root}/missing.npz"], ["{root}/missing.npz", "no such weights file"]),
    ("unknown-weights-name", ["--weights", "nosuchname"], ["nosuchname", "unknown weights"]),
    ("non-integer-size", ["--size", "abc"], ["--size", "abc"]),
    ("unknown-pooling", ["--pooling", "median"], ["--pooling", "median"]),
    ("unknown-flag", ["--colour", "red"], ["colour"]),
    # The artistic controls' flags.
    ("style-blend-not-number", ["--style_blend", "a"], ["--style_blend", "'a'"]),
    ("style-blend-count", ["--style_blend", "1,2"], ["--style_blend", "2 entries", "1 style"]),
    ("style-blend-negative", ["--style_blend", "-1"], ["--style_blend", "non-negative"]),
    ("style-scale-zero", ["--style_scale", "0"], ["--style_scale", "got 0"]),
    ("style-mask-missing", ["--style_masks", "{root}/nomask.png"], ["mask", "{root}/nomask.png", "does not exist"]),
    ("style-mask-count", ["--style_masks", "{root}/content.png,{root}/content.png"], ["--style_masks", "2 mask"]),
    ("style-layer-sets-unknown", ["--style_layer_sets", "relu1_1;relu9_9"], ["--style_layer_sets", "relu9_9"]),
    ("style-layer-sets-count", ["--style_layer_sets", "relu1_1;relu2_1"], ["--style_layer_sets", "2 entries"]),
    ("optimizer-args-syntax", ["--optimizer_args", "momentum"], ["--optimizer_args", "key=value"]),
    ("optimizer-args-unknown", ["--optimizer", "sgd", "--optimizer_args", "bogus=1"], ["sgd", "bogus"]),
    ("lbfgs-schedule", ["--optimizer", "lbfgs", "--lr_schedule", "cosine"], ["--lr_schedule", "L-BFGS"]),
    ("lbfgs-normalize", ["--optimizer", "lbfgs", "--normalize_gradients"], ["--normalize_gradients"]),
    ("unknown-schedule", ["--lr_schedule", "zigzag"], ["--lr_schedule", "zigzag"]),
    ("unknown-color-mode", ["--preserve_colors", "sepia"], ["--preserve_colors", "sepia"]),
    ("unknown-style-loss", ["--style_loss", "wasserstein"], ["--style_loss", "wasserstein"]),
    ("unknown-layer-balance", ["--style_layer_balance", "auto"], ["--style_layer_balance", "auto"]),
    ("depth-missing", ["--depth", "{root}/nodepth.png"], ["depth map", "{root}/nodepth.png", "does not exist"]),
    ("depth-regions-zero", ["--depth", "{root}/content.png", "--depth_regions", "0"], ["--depth_regions"]),
    ("edge-loss-without-hed", ["--edge_weight", "1"], ["hed-vgg16", "fetch"]),
    ("negative-laplacian", ["--laplacian_weight", "-1"], ["--laplacian_weight", "-1"]),
    ("negative-range-weight", ["--range_weight", "-1"], ["--range_weight", "-1"]),
    ("layer-weights-unknown-layer", ["--style_layer_weights", "relu9_9=1"], ["--style_layer_weights", "relu9_9"]),
    ("layer-weights-negative", ["--style_layer_weights", "relu1_1=-1"], ["--style_layer_weights", ">= 0"]),
    ("layer-weights-syntax", ["--style_layer_weights", "relu1_1"], ["--style_layer_weights", "key=value"]),
    ("layer-weights-all-zero", ["--style_layer_weights", "relu1_1=0,relu2_1=0"], ["--style_layer_weights",
                                                                                  "weight 0"]),
    # The high-resolution engine's flags (nst_jax.highres).
    ("tile-size-negative", ["--tile_size", "-1"], ["--tile_size", "got -1"]),
    ("tile-halo-negative", ["--tile_size", "16", "--tile_halo", "-2"], ["--tile_halo", "got -2"]),
    ("tile-overlap-too-big", ["--tile_size", "16", "--tile_halo", "4", "--tile_overlap", "8"], ["--tile_overlap"]),
    ("precision-unknown", ["--precision", "fp8"], ["--precision", "fp8"]),
    ("scale-step-one", ["--start_size", "16", "--scale_step", "1"], ["--scale_step", "got 1.0"]),
    ("start-size-above-size", ["--size", "32", "--start_size", "64"], ["--start_size", "larger than --size"]),
    ("scale-iterations-count", ["--size", "32", "--start_size", "16", "--scale_iterations", "1,2,3"],
     ["--scale_iterations", "3 entries", "2 scales"]),
    ("scale-iterations-not-int", ["--start_size", "16", "--scale_iterations", "a"], ["--scale_iterations", "'a'"]),
    ("max-memory-negative", ["--max_memory_gb", "-1"], ["--max_memory_gb", "got -1"]),
    ("max-memory-too-small", ["--tile_size", "0", "--max_memory_gb", "0.0001"], ["smaller --size", "GiB"]),
    ("output-bits", ["--output_bits", "12"], ["--output_bits", "got 12"]),
    ("output-bits-jpeg", ["--output_bits", "16", "--output", "{root}/out16.jpg"], ["16-bit", ".png or .tif"]),
    ("tiles-with-masks", ["--tile_size", "16", "--style_masks", "{root}/content.png"], ["--style_masks",
                                                                                       "high-resolution"]),
    ("process-id-without-coordinator", ["--process_id", "1"], ["--coordinator_address"]),
    ("coordinator-bad", ["--coordinator_address", "nohost", "--num_processes", "2", "--process_id", "0"],
     ["--coordinator_address", "host:port"]),
    ("process-id-out-of-range", ["--coordinator_address", "localhost:1", "--num_processes", "2", "--process_id", "2"],
     ["--process_id", "[0, 2)"]),
]


@pytest.mark.parametrize("extra, needles", [pytest.param(e, n, id=i) for i, e, n in BAD_INPUTS])
def test_bad_input_gives_one_error_line_and_status_2(setup, extra, needles):
  root = setup["root"]
  (root / "notes.png").write_text("shopping list: eggs, flour\n")
  output = root / "out.png"
  output.unlink(missing_ok=True)
  good = ["--content", str(root / "content.png"), "--style", str(root / "style.png"), "--output", str(output),
          "--weights", str(setup["weights"]), *FAST]
  start = time.perf_counter()
  # absl keeps the last value of a repeated flag, so the bad value overrides the good one.
  proc = run_cli(setup, "stylize", *good, *(a.format(root=root) for a in extra))
  elapsed = time.perf_counter() - start
  assert_one_line_error(proc, *(n.format(root=root) for n in needles))
  assert not output.exists()
  if "10000000" in extra:
    # Refused by the memory estimate from the shape alone: no 10^7-pixel array, no optimisation.
    assert elapsed < 60, elapsed


# photoreal (Luan et al.): (id, extra arguments, strings the error line must contain).
PHOTOREAL_BAD_INPUTS = [
    ("seg-missing", ["--content_seg", "{root}/noseg.png", "--style_seg", "{root}/seg.png"],
     ["--content_seg map", "{root}/noseg.png", "does not exist"]),
    ("seg-only-one", ["--content_seg", "{root}/seg.png"], ["--content_seg", "--style_seg", "both"]),
    ("seg-no-known-colour", ["--content_seg", "{root}/content.png", "--style_seg", "{root}/seg.png"],
     ["--content_seg", "none of the colours"]),
    ("two-styles", ["--style", "{root}/style.png,{root}/style.png"], ["one --style", "got 2"]),
    ("stage2-negative", ["--stage2_iterations", "-1"], ["--stage2_iterations", "-1"]),
    ("matting-negative", ["--matting_weight", "-1"], ["--matting_weight", "-1"]),
    ("matting-eps-zero", ["--matting_eps", "0"], ["--matting_eps", "0"]),
    ("sigma-r-zero", ["--smooth_sigma_r", "0"], ["--smooth_sigma_r", "0"]),
    ("pyramid-flag", ["--tile_size", "16", "--start_size", "16"], ["photoreal", "--start_size"]),
    ("checkpoint-flag", ["--checkpoint_dir", "{root}/ckpt"], ["photoreal", "--checkpoint_dir"]),
    ("tile-batch-zero", ["--tile_batch", "0"], ["--tile_batch", "0"]),
    ("precision-bad", ["--tile_size", "16", "--precision", "fp8"], ["--precision", "fp8"]),
]


def write_seg(path, h: int, w: int) -> None:
  seg = np.zeros((h, w, 3), np.uint8)
  seg[:, w // 2:] = 255  # black | white
  Image.fromarray(seg).save(path)


@pytest.mark.parametrize("extra, needles", [pytest.param(e, n, id=i) for i, e, n in PHOTOREAL_BAD_INPUTS])
def test_photoreal_bad_input_gives_one_error_line(setup, extra, needles):
  root = setup["root"]
  write_seg(root / "seg.png", 24, 32)
  output = root / "photo.png"
  output.unlink(missing_ok=True)
  good = ["--content", str(root / "content.png"), "--style", str(root / "style.png"), "--output", str(output),
          "--weights", str(setup["weights"]), "--size", "32", "--optimizer", "adam", "--iterations", "1"]
  proc = run_cli(setup, "photoreal", *good, *(a.format(root=root) for a in extra))
  assert_one_line_error(proc, *(n.format(root=root) for n in needles))
  assert not output.exists()


def run_photoreal(setup, output, style_seg: str, *extra: str):
  """A tiny, fast photoreal run (32 px, Adam, 2 + 1 iterations, shallow layers) with root/cseg.png as the content
  map and root/<style_seg> as the style map."""
  root = setup["root"]
  return run_cli(setup, "photoreal", "--content", str(root / "content.png"), "--style", str(root / "style.png"),
                 "--content_seg", str(root / "cseg.png"), "--style_seg", str(root / style_seg), "--output",
                 str(output), "--weights", str(setup["weights"]), "--size", "32", "--optimizer", "adam",
                 "--learning_rate", "0.01", "--stage1_iterations", "2", "--stage2_iterations", "1",
                 "--smooth_radius", "2", "--style_layers", "relu1_1,relu2_1", "--content_layers", "relu2_2", *extra)


def test_photoreal_runs_both_stages_with_off_by_one_maps(setup):
  root = setup["root"]
  write_seg(root / "cseg.png", 25, 33)  # one pixel larger than the content, like the paper's pair 7
  write_seg(root / "sseg.png", 24, 32)
  output = root / "photo_ok.png"
  proc = run_photoreal(setup, output, "sseg.png", "--save_stages")
  assert proc.returncode == 0, proc.stderr
  assert "2+1 iterations" in proc.stdout and "matting" in proc.stdout
  image = image_io.load_image(output)
  assert image.shape == (24, 32, 3) and np.all(np.isfinite(image))
  assert (root / "photo_ok_stage1.png").exists() and (root / "photo_ok_stage2.png").exists()


def test_photoreal_runs_in_tiles(setup):
  """--tile_size sends both stages through the tiled engine (24x32 content in 2 x 2 tiles of 16 px), with a 16-bit
  TIFF output."""
  root = setup["root"]
  write_seg(root / "cseg.png", 24, 32)
  output = root / "photo_tiled.tif"
  proc = run_photoreal(setup, output, "cseg.png", "--tile_size", "16", "--tile_overlap", "4", "--output_bits", "16")
  assert proc.returncode == 0, proc.stderr
  assert "2+1 iterations, 4 tile(s) of 16+2*" in proc.stdout and "matting" in proc.stdout, proc.stdout
  with Image.open(output) as im:
    assert im.size == (32, 24) and tuple(im.tag_v2[258]) == (16, 16, 16)  # BitsPerSample: 16-bit RGB
  image = image_io.load_image(output)
  assert image.shape == (24, 32, 3) and np.all(np.isfinite(image))


def test_stray_positional_argument(setup):
  proc = run_cli(setup, "stylize", "stray.png", "--weights", str(setup["weights"]))
  assert_one_line_error(proc, "stray.png", "expected one command")


def test_synthesize_refuses_content_and_needs_style(setup):
  root = setup["root"]
  common = ["--weights", str(setup["weights"]), "--output", str(root / "texture.png"), *FAST]
  assert_one_line_error(run_cli(setup, "synthesize", "--content", str(root / "content.png"),
                                "--style", str(root / "style.png"), *common), "synthesize takes no --content")
  assert_one_line_error(run_cli(setup, "synthesize", *common), "synthesize needs --style")


def test_no_command(setup):
  assert_one_line_error(run_cli(setup), "expected one command", "(none)")


def test_unknown_command(setup):
  assert_one_line_error(run_cli(setup, "stylise"), "stylise")


# ----------------------------------------------------------------------------------------------------------------
# Unusual but valid inputs, end to end


def read_output(path: pathlib.Path, size: tuple[int, int]) -> np.ndarray:
  """The written image as float RGB, after checking that it is a complete image of (height, width) `size`."""
  with Image.open(path) as im:
    im.load()  # decodes every byte: a truncated file fails here
    assert (im.height, im.width) == size and im.mode == "RGB", (im.size, im.mode)
    return np.asarray(im, dtype=np.float32) / 255.0


def expected_content(path: pathlib.Path, size: int = 32) -> np.ndarray:
  return image_io.resize_long_side(image_io.load_image(path), size)


def test_grayscale_content_rgba_style_and_intermediate_save(setup, tmp_path):
  gray = np.zeros((30, 40), np.uint8)  # 40 wide, 30 tall -> 32 x 24
  gray[:, 20:] = 200
  gray[10:20, 5:15] = 90
  Image.fromarray(gray, mode="L").save(tmp_path / "gray.png")
  rgba = np.random.default_rng(1).integers(0, 256, (20, 24, 4), dtype=np.uint8)
  Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
  output = tmp_path / "result.png"
  proc = run_cli(setup, "stylize", "--content", str(tmp_path / "gray.png"), "--style", str(tmp_path / "rgba.png"),
                 "--output", str(output), "--weights", str(setup["weights"]), *FAST, "--save_every", "1")
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


def test_exif_rotated_cmyk_jpeg_content_and_16bit_style(setup, tmp_path):
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
  proc = run_cli(setup, "stylize", "--content", str(tmp_path / "rotated_cmyk.jpg"), "--style",
                 str(tmp_path / "style16.png"), "--output", str(output), "--weights", str(setup["weights"]), *FAST)
  assert proc.returncode == 0, proc.stderr
  result = read_output(output, (32, 16))  # taller than wide: the rotation was applied
  red, white = np.array([1.0, 0.0, 0.0]), np.array([1.0, 1.0, 1.0])
  quadrants = {"top-right": (result[1:15, 9:15], red), "top-left": (result[1:15, 1:7], white),
               "bottom-left": (result[17:31, 1:7], white), "bottom-right": (result[17:31, 9:15], white)}
  for name, (block, colour) in quadrants.items():
    assert np.abs(block.mean(axis=(0, 1)) - colour).max() < 0.1, (name, block.mean(axis=(0, 1)))


def test_highres_pyramid_tiles_16bit_tiff_exif_and_resume(setup, tmp_path):
  """The tiled pyramid path end to end: EXIF-rotated content, 16-bit TIFF output, a checkpoint folder that a
  rerun finds complete (nothing left to run, the same image)."""
  stored = Image.new("RGB", (40, 20), (255, 255, 255))
  stored.paste((255, 0, 0), (0, 0, 20, 10))
  exif = Image.Exif()
  exif[0x0112] = 6
  stored.save(tmp_path / "rotated.jpg", quality=95, exif=exif)
  output = tmp_path / "result.tif"
  args = ["stylize", "--content", str(tmp_path / "rotated.jpg"), "--style", str(setup["root"] / "style.png"),
          "--output", str(output), "--weights", str(setup["weights"]), *FAST, "--start_size", "16",
          "--tile_size", "16", "--output_bits", "16", "--checkpoint_dir", str(tmp_path / "ckpt")]
  proc = run_cli(setup, *args)
  assert proc.returncode == 0, proc.stderr
  assert "8x16 (2 it, 1 tile(s)" in proc.stdout and "16x32 (1 it, 2 tile(s)" in proc.stdout, proc.stdout  # tiled top
  with Image.open(output) as im:
    assert im.size == (16, 32) and tuple(im.tag_v2[258]) == (16, 16, 16)  # BitsPerSample: 16-bit RGB
  first = image_io.load_image(output)
  assert np.abs(first[1:15, 9:15].mean(axis=(0, 1)) - [1.0, 0.0, 0.0]).max() < 0.15  # red top-right: upright
  assert np.abs(first[17:31, 1:7].mean(axis=(0, 1)) - 1.0).max() < 0.15
  again = run_cli(setup, *args)
  assert again.returncode == 0 and "nothing left to run" in again.stdout, again.stdout + again.stderr
  np.testing.assert_array_equal(image_io.load_image(output), first)


def test_16bit_png_content_and_palette_style(setup, tmp_path):
  ramp = np.tile(np.linspace(0, 65535, 40).astype(np.uint16), (20, 1))  # 40 x 20 -> 32 x 16
  ramp[:, :8] = 700  # dark but not black: 8-bit misreading (700 > 255) would clip it to white
  Image.fromarray(ramp).save(tmp_path / "content16.png")
  palette = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) % 4, mode="P")
  palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 0] + [0] * (252 * 3))
  palette.save(tmp_path / "palette.png", transparency=2)
  output = tmp_path / "result.png"
  proc = run_cli(setup, "stylize", "--content", str(tmp_path / "content16.png"), "--style",
                 str(tmp_path / "palette.png"), "--output", str(output), "--weights", str(setup["weights"]), *FAST)
  assert proc.returncode == 0, proc.stderr
  result = read_output(output, (16, 32))
  assert np.abs(result - expected_content(tmp_path / "content16.png")).max() < CONTENT_TOLERANCE
  assert result[4:12, 1:5].mean() < 700 / 65535 + CONTENT_TOLERANCE
  assert result[4:12, -4:].mean() > 1 - CONTENT_TOLERANCE


def test_synthesize_writes_a_texture_of_the_style_aspect(setup, tmp_path):
  output = tmp_path / "texture.png"
  proc = run_cli(setup, "synthesize", "--style", str(setup["root"] / "style.png"), "--weights",
                 str(setup["weights"]), "--output", str(output), *FAST)
  assert proc.returncode == 0, proc.stderr
  with Image.open(output) as im:
    assert im.size == (32, 24)  # the 32x24 style's aspect at --size 32
    pixels = np.asarray(im, np.float32) / 255
  # Started from noise (the default init without content): two small steps leave a noise-like image.
  assert pixels.std() > 0.15


# ----------------------------------------------------------------------------------------------------------------
# adain (Huang & Belongie 2017): bad inputs and one run, with a tiny decoder tied to the fake weights


@pytest.fixture(scope="module")
def adain_setup(setup) -> dict:
  from nst_jax.models import adain_decoder  # pylint: disable=import-outside-toplevel
  root = setup["root"]
  for name, sha in (("decoder.npz", "0" * 64), ("foreign.npz", "f" * 64)):
    adain_decoder.save_decoder(root / name, adain_decoder.DecoderCheckpoint(
        params=adain_decoder.init_decoder("vgg16", 4), arch="vgg16", width=4, encoder_sha256=sha, encoder_source="test"))
  Image.fromarray(np.full((24, 32), 255, np.uint8)).save(root / "mask.png")
  return {**setup, "args": ["--content", str(root / "content.png"), "--style", str(root / "style.png"),
                            "--weights", str(setup["weights"]), "--decoder", str(root / "decoder.npz")]}


ADAIN_BAD_INPUTS = [
    ("alpha-range", ["--alpha", "1.5"], ["--alpha", "1.5"]),
    ("decoder-missing", ["--decoder", "{root}/none.npz"], ["--decoder", "none.npz", "no such decoder"]),
    ("decoder-not-npz", ["--decoder", "{root}/content.png"], ["content.png", "not an nst_jax AdaIN decoder"]),
    ("decoder-foreign-encoder", ["--decoder", "{root}/foreign.npz"], ["--decoder was trained with", "--weights"]),
    ("blend-count", ["--style_blend", "1,2"], ["--style_blend", "one weight per style"]),
    ("masks-count", ["--style_masks", "{root}/mask.png,{root}/mask.png"], ["--style_masks", "one mask per style"]),
    ("masks-and-blend", ["--style_masks", "{root}/mask.png", "--style_blend", "1"], ["cannot be combined"]),
    ("tile-size", ["--tile_size", "20"], ["--tile_size", "got 20"]),
    ("max-megapixels", ["--max_megapixels", "0"], ["--max_megapixels", "positive"]),
]


@pytest.mark.parametrize("extra, needles", [pytest.param(e, n, id=i) for i, e, n in ADAIN_BAD_INPUTS])
def test_adain_bad_input_gives_one_error_line(adain_setup, extra, needles):
  root = adain_setup["root"]
  output = root / "adain_out.png"
  output.unlink(missing_ok=True)
  proc = run_cli(adain_setup, "adain", *adain_setup["args"], "--output", str(output),
                 *(a.format(root=root) for a in extra))
  assert_one_line_error(proc, *(n.format(root=root) for n in needles))
  assert not output.exists()


def test_adain_keeps_the_content_size_and_tiles_on_request(adain_setup, tmp_path):
  whole, tiled = tmp_path / "whole.png", tmp_path / "tiled.png"
  for output, extra in ((whole, []), (tiled, ["--tile_size", "32"])):
    proc = run_cli(adain_setup, "adain", *adain_setup["args"], "--alpha", "0.5", "--output", str(output), *extra)
    assert proc.returncode == 0, proc.stderr
  read_output(whole, (24, 32))  # no --size: the content's own 32x24
  read_output(tiled, (24, 32))


# ----------------------------------------------------------------------------------------------------------------
# What a new user meets: help, foreign flags, progress, plain lines, tiny contents, stretched masks


def test_help_lists_the_commands_and_exits_0(setup):
  for flag in ("--help", "-h"):
    result = run_cli(setup, flag)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "usage: python -m nst_jax COMMAND [flags]"
    for name in ("stylize", "synthesize", "photoreal", "adain"):
      assert any(line.split()[:1] == [name] for line in lines), (name, result.stdout)


@pytest.mark.parametrize("command, own, foreign", [
    ("stylize", ["--content", "--style_masks", "--style_loss", "--start_size", "--checkpoint_dir"],
     ["--alpha", "--content_seg", "--decoder"]),
    ("synthesize", ["--style", "--style_loss", "--tile_size"], ["--content", "--alpha"]),
    ("photoreal", ["--content_seg", "--matting_weight", "--stage2_iterations", "--tile_size"],
     ["--alpha", "--style_masks", "--start_size"]),
    ("adain", ["--alpha", "--decoder", "--max_megapixels", "--style_masks"], ["--style_loss", "--iterations"]),
])
def test_each_command_help_shows_its_own_flags_only(setup, command, own, foreign):
  for flag in ("--help", "--helpfull"):
    result = run_cli(setup, command, flag)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    text = result.stdout
    assert text.startswith(f"usage: python -m nst_jax {command} "), text[:200]
    flags_shown = re.findall(r"^  (--\w+)", text, flags=re.M)
    for name in own:
      assert name in flags_shown, (name, flags_shown)
    for name in foreign + ["--logtostderr", "--flagfile", "--only_check_args"]:  # no other command's, no absl's
      assert name not in flags_shown, (name, flags_shown)
    assert "[default: " in text  # every flag with a default says it


@pytest.mark.parametrize("args, flag, owner", [
    (["stylize", "--alpha", "0.3"], "--alpha", "adain"),
    (["adain", "--style_loss", "mrf"], "--style_loss", "stylize"),
    (["photoreal", "--style_masks", "m.png"], "--style_masks", "stylize"),
    (["stylize", "--nosmooth"], "--nosmooth", "photoreal"),
])
def test_a_flag_of_another_command_is_refused(setup, args, flag, owner):
  output = setup["root"] / "foreign.png"
  line = assert_one_line_error(run_cli(setup, *args, "--output", str(output)), f"{args[0]} takes no {flag}",
                               f"a flag of {owner}")
  assert f"python -m nst_jax {args[0]} --help" in line
  assert not output.exists()


def test_progress_bar_in_place_with_eta_and_plain_lines(setup, tmp_path):
  output = tmp_path / "progress.png"
  args = ["stylize", "--content", str(setup["root"] / "content.png"), "--style", str(setup["root"] / "style.png"),
          "--output", str(output), "--weights", str(setup["weights"]), *FAST, "--iterations", "6", "--log_every", "2"]
  result = run_cli(setup, *args)
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


@pytest.mark.parametrize("size", [(1, 1), (8, 300)])
def test_tiny_content_is_refused(setup, tmp_path, size):
  Image.new("RGB", size[::-1], (200, 30, 30)).save(tmp_path / "tiny.png")
  output = tmp_path / "out.png"
  for command in ("stylize", "photoreal", "adain"):
    args = [command, "--content", str(tmp_path / "tiny.png"), "--style", str(setup["root"] / "style.png"),
            "--weights", str(setup["weights"]), "--output", str(output)]
    assert_one_line_error(run_cli(setup, *args), "content image", "tiny.png", f"{size[1]}x{size[0]} px",
                          "at least 16 px")
    assert not output.exists()


def test_mask_of_another_aspect_ratio_is_stretched_with_a_warning(setup, tmp_path):
  Image.new("L", (40, 40), 255).save(tmp_path / "square.png")    # the content is 32x24: another aspect ratio
  Image.new("L", (64, 48), 255).save(tmp_path / "twice.png")     # twice the content's size: same aspect, no warning
  for mask, warned in (("square.png", True), ("twice.png", False)):
    output = tmp_path / f"masked_{mask}"
    result = run_cli(setup, "stylize", "--content", str(setup["root"] / "content.png"), "--style",
                     str(setup["root"] / "style.png"), "--style_masks", str(tmp_path / mask), "--output", str(output),
                     "--weights", str(setup["weights"]), *FAST)
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


def test_process_help_and_error(setup):
  help_ = run_process(setup, "--help")
  assert help_.returncode == 0 and "commands:" in help_.stdout and "adain" in help_.stdout, help_.stderr
  # The list of commands imports no JAX: it answers at once.
  probe = subprocess.run([sys.executable, "-c", "import sys; from nst_jax.cli import main; main.main(['--help']); "
                          "print('jax' in sys.modules)"], cwd=REPO, capture_output=True, text=True, timeout=60)
  assert probe.stdout.strip().endswith("False"), probe.stdout + probe.stderr
  assert_one_line_error(run_process(setup, "stylize", "--size", "0", "--weights", str(setup["weights"])),
                        "--size", "got 0")
  assert_one_line_error(run_process(setup), "expected one command", "(none)")


def test_process_run_writes_the_image(setup, tmp_path):
  output = tmp_path / "process.png"
  proc = run_process(setup, "stylize", "--content", str(setup["root"] / "content.png"), "--style",
                     str(setup["root"] / "style.png"), "--output", str(output), "--weights", str(setup["weights"]),
                     *FAST)
  assert proc.returncode == 0, proc.stderr
  assert f"wrote {output}" in proc.stdout and "Traceback" not in proc.stderr
  assert np.abs(read_output(output, (24, 32)) - expected_content(setup["root"] / "content.png")).max() \
      < CONTENT_TOLERANCE
