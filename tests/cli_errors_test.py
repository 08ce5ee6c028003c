"""Every user mistake on the command line ends in exactly one stderr line `error: ...` and exit status 2, never a
traceback, and writes no output: bad files, numbers, layers, flags of other commands, tiny contents. The commands
run in this process (`nst_jax.cli.main.main`); the fixtures are in conftest.py, the helpers in cli_helpers.py."""

from __future__ import annotations

import re
import time

import pytest
from PIL import Image

from cli_helpers import FAST, FAST_SYNTHESIS, assert_one_line_error, run_cli, write_seg


# ----------------------------------------------------------------------------------------------------------------
# User mistakes


# A config field as library errors name it (`HighresConfig.tile_size`); the command line names its flag instead.
CONFIG_FIELD = re.compile(r"\b\w+Config\.\w+")
# (id, extra arguments, strings the error line must contain); {root} is the fixture's folder.
BAD_INPUTS = [
    ("missing-content", ["--content", "{root}/nope.jpg"], ["content image", "{root}/nope.jpg", "does not exist"]),
    ("non-image-content", ["--content", "{root}/notes.png"], ["content image", "{root}/notes.png", "not an image"]),
    ("unknown-output-extension", ["--output", "{root}/out.xyz"], ["{root}/out.xyz", "unknown image extension"]),
    ("size-zero", ["--size", "0"], ["--size", "got 0"]),
    ("size-negative", ["--size", "-5"], ["--size", "got -5"]),
    ("size-absurd", ["--size", "10000000"], ["smaller --size", "GiB"]),
    ("unknown-style-layer", ["--style_layers", "relu9_9"], ["--style_layers", "relu9_9"]),
    ("octave-layer-factor", ["--style_layers", "relu1_1,relu2_1@1"], ["--style_layers", "relu2_1@1", "from 2 to"]),
    ("octave-layer-highres", ["--style_layers", "coarse", "--tile_size", "64"], ["relu1_1@4", "high-resolution"]),
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
    ("scale-iterations-count", ["--size", "32", "--start_size", "24", "--scale_iterations", "1,2,3"],
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
def test_bad_input_gives_one_error_line_and_status_2(cli_setup, extra, needles):
  root = cli_setup["root"]
  (root / "notes.png").write_text("shopping list: eggs, flour\n")
  output = root / "out.png"
  output.unlink(missing_ok=True)
  good = ["--content", str(root / "content.png"), "--style", str(root / "style.png"), "--output", str(output),
          "--weights", str(cli_setup["weights"]), *FAST]
  start = time.perf_counter()
  # absl keeps the last value of a repeated flag, so the bad value overrides the good one.
  proc = run_cli(cli_setup, "stylize", *good, *(a.format(root=root) for a in extra))
  elapsed = time.perf_counter() - start
  line = assert_one_line_error(proc, *(n.format(root=root) for n in needles))
  assert not CONFIG_FIELD.search(line), line  # the library's field names become flags
  assert not output.exists()
  if "10000000" in extra:
    # Refused by the memory estimate from the shape alone: no 10^7-pixel array, no optimisation.
    assert elapsed < 60, elapsed



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



@pytest.mark.parametrize("extra, needles", [pytest.param(e, n, id=i) for i, e, n in PHOTOREAL_BAD_INPUTS])
def test_photoreal_bad_input_gives_one_error_line(cli_setup, extra, needles):
  root = cli_setup["root"]
  write_seg(root / "seg.png", 24, 32)
  output = root / "photo.png"
  output.unlink(missing_ok=True)
  good = ["--content", str(root / "content.png"), "--style", str(root / "style.png"), "--output", str(output),
          "--weights", str(cli_setup["weights"]), "--size", "32", "--optimizer", "adam", "--iterations", "1"]
  proc = run_cli(cli_setup, "photoreal", *good, *(a.format(root=root) for a in extra))
  line = assert_one_line_error(proc, *(n.format(root=root) for n in needles))
  assert not CONFIG_FIELD.search(line), line
  assert not output.exists()



def test_stray_positional_argument(cli_setup):
  proc = run_cli(cli_setup, "stylize", "stray.png", "--weights", str(cli_setup["weights"]))
  assert_one_line_error(proc, "stray.png", "expected one command")


def test_synthesize_refuses_content_and_needs_style(cli_setup):
  root = cli_setup["root"]
  common = ["--weights", str(cli_setup["weights"]), "--output", str(root / "texture.png"), *FAST_SYNTHESIS]
  assert_one_line_error(run_cli(cli_setup, "synthesize", "--content", str(root / "content.png"),
                                "--style", str(root / "style.png"), *common), "synthesize takes no --content")
  assert_one_line_error(run_cli(cli_setup, "synthesize", *common), "synthesize needs --style")


def test_no_command(cli_setup):
  assert_one_line_error(run_cli(cli_setup), "expected one command", "(none)")


def test_unknown_command(cli_setup):
  assert_one_line_error(run_cli(cli_setup, "stylise"), "stylise")



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
def test_adain_bad_input_gives_one_error_line(adain_cli_setup, extra, needles):
  root = adain_cli_setup["root"]
  output = root / "adain_out.png"
  output.unlink(missing_ok=True)
  proc = run_cli(adain_cli_setup, "adain", *adain_cli_setup["args"], "--output", str(output),
                 *(a.format(root=root) for a in extra))
  assert_one_line_error(proc, *(n.format(root=root) for n in needles))
  assert not output.exists()



@pytest.mark.parametrize("args, flag, owner", [
    (["stylize", "--alpha", "0.3"], "--alpha", "photoreal, adain, wct"),
    (["adain", "--style_loss", "mrf"], "--style_loss", "stylize"),
    (["photoreal", "--style_masks", "m.png"], "--style_masks", "stylize"),
    (["stylize", "--nosmooth"], "--nosmooth", "photoreal"),
])
def test_a_flag_of_another_command_is_refused(cli_setup, args, flag, owner):
  output = cli_setup["root"] / "foreign.png"
  line = assert_one_line_error(run_cli(cli_setup, *args, "--output", str(output)), f"{args[0]} takes no {flag}",
                               f"a flag of {owner}")
  assert f"python -m nst_jax {args[0]} --help" in line
  assert not output.exists()


@pytest.mark.parametrize("size", [(1, 1), (8, 300)])
def test_tiny_content_is_refused(cli_setup, tmp_path, size):
  Image.new("RGB", size[::-1], (200, 30, 30)).save(tmp_path / "tiny.png")
  output = tmp_path / "out.png"
  for command in ("stylize", "photoreal", "adain"):
    args = [command, "--content", str(tmp_path / "tiny.png"), "--style", str(cli_setup["root"] / "style.png"),
            "--weights", str(cli_setup["weights"]), "--output", str(output)]
    assert_one_line_error(run_cli(cli_setup, *args), "content image", "tiny.png", f"{size[1]}x{size[0]} px",
                          "at least 16 px")
    assert not output.exists()

