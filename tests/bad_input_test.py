"""A battery of bad or unusual inputs for every command, run in this process on tiny images (16-48 px).

Each case asserts the exit status, exactly one `error:` line on stderr without a traceback (for status 2), that no
input file changed (hash before and after) and that no file appeared besides the case's intended outputs. Most
cases are refused by validation before anything compiles, so the whole table runs in seconds.

To add a case, append a `case(...)` line to `CASES`: the command, the arguments added after the command's good
arguments (`GOOD`; a repeated flag overrides the good value), and strings the error line must contain.
Placeholders: {root} is the folder of the input files (`inputs`), {out} the default output path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib

import numpy as np
import pytest
from PIL import Image

from cli_helpers import run_cli
from nst_jax.models import adain_decoder, wct_decoder

FAST = ("--optimizer", "adam", "--iterations", "1", "--size", "32", "--content_layers", "relu1_2",
        "--style_layers", "relu1_1,relu2_1")
# Each command's arguments that succeed; a case's arguments come after them.
GOOD = {
    "stylize": ("--content", "{root}/content.png", "--style", "{root}/style.png", "--output", "{out}",
                "--weights", "{root}/fake.npz", *FAST),
    "synthesize": ("--style", "{root}/style.png", "--output", "{out}", "--weights", "{root}/fake.npz",
                   *FAST[:6], "--style_layers", "relu1_1,relu2_1"),  # no content flags
    "photoreal": ("--content", "{root}/content.png", "--style", "{root}/style.png", "--output", "{out}",
                  "--weights", "{root}/fake.npz", "--size", "32", "--optimizer", "adam", "--iterations", "1"),
    "adain": ("--content", "{root}/content.png", "--style", "{root}/style.png", "--output", "{out}",
              "--weights", "{root}/fake.npz", "--decoder", "{root}/decoder.npz"),
    "wct": ("--content", "{root}/content.png", "--style", "{root}/style.png", "--output", "{out}",
            "--weights", "{root}/fake.npz", "--decoders", "{root}/decoders.npz"),
}
IMAGE_COMMANDS = tuple(GOOD)  # the commands that write one image to --output
GOOD["train wct"] = ("--out_dir", "{out}_run", "--levels", "relu1_1", "--width", "4", "--crop", "16", "--batch", "1",
                     "--steps", "1", "--content_dirs", "{root}/photos", "--style_dirs", "{root}/paintings",
                     "--weights", "{root}/fake.npz")
GOOD["train adain"] = ("--out_dir", "{out}_run", "--width", "4", "--crop", "16", "--batch", "1", "--steps", "1",
                       "--content_dirs", "{root}/photos", "--style_dirs", "{root}/paintings",
                       "--weights", "{root}/fake.npz")


@dataclasses.dataclass(frozen=True)
class Case:
  command: str
  args: tuple[str, ...]
  needles: tuple[str, ...]
  code: int = 2
  outputs: tuple[str, ...] = ()  # files the case may write (status 0)
  env: tuple[tuple[str, str], ...] = ()  # environment variables set for the case


def case(command: str, args: list[str] | tuple[str, ...], *needles: str, name: str, code: int = 2,
         outputs: tuple[str, ...] = (), env: dict[str, str] | None = None):
  return pytest.param(Case(command, tuple(args), needles, code, outputs, tuple((env or {}).items())),
                      id=f"{command.replace(' ', '-')}-{name}")


def every_command(args: list[str], *needles: str, name: str, commands=IMAGE_COMMANDS) -> list:
  return [case(command, args, *needles, name=name) for command in commands]


def output_cases() -> list:
  """--output naming an input file or a folder: refused for every command before any work."""
  cases = every_command(["--output", "{root}/content.png"], "--output", "--content", "overwritten",
                        name="output-is-content", commands=("stylize", "photoreal", "adain", "wct"))
  cases += every_command(["--output", "{root}/style.png"], "--output", "--style", "overwritten",
                         name="output-is-style")
  cases += every_command(["--output", "{root}/folder"], "--output", "is a folder", name="output-is-folder")
  cases += every_command(["--output", "{root}/link_to_content.png"], "--content", "overwritten",
                         name="output-is-link-to-content", commands=("stylize", "photoreal", "adain", "wct"))
  cases += every_command(["--output", "{root}/mask.png", "--style_masks", "{root}/mask.png"], "--style_masks",
                         name="output-is-mask", commands=("stylize", "adain", "wct"))
  cases += [
      case("stylize", ["--output", "{root}/depth.png", "--depth", "{root}/depth.png"], "--depth",
           name="output-is-depth"),
      case("stylize", ["--output", "{root}/init.png", "--init", "{root}/init.png"], "--init", name="output-is-init"),
      case("photoreal", ["--output", "{root}/seg.png", "--content_seg", "{root}/seg.png", "--style_seg",
                         "{root}/seg2.png"], "--content_seg", name="output-is-content-seg"),
      case("photoreal", ["--output", "{root}/seg2.png", "--content_seg", "{root}/seg.png", "--style_seg",
                         "{root}/seg2.png"], "--style_seg", name="output-is-style-seg"),
      case("stylize", ["--output", "{root}/./sub/../content.png"], "--content", name="output-is-content-dotted"),
      case("stylize", ["--output", "{root}/photo.png", "--content", "{root}/photo_00001.png"], "intermediate",
           name="output-intermediate-is-content"),
      case("photoreal", ["--output", "{root}/photo.png", "--style", "{root}/photo_stage1.png"], "--style",
           name="output-stage-is-style"),
      case("stylize", ["--output", "{root}/noextension"], "unknown image extension", name="output-no-extension"),
  ]
  return cases


def image_file_cases() -> list:
  """Unreadable, non-finite or too small images wherever a command reads one."""
  cases = []
  for command in IMAGE_COMMANDS:
    content = command != "synthesize"
    if content:
      cases += [
          case(command, ["--content", "{root}/missing.png"], "content image", "does not exist", name="content-missing"),
          case(command, ["--content", "{root}/notes.png"], "content image", "not an image", name="content-not-image"),
          case(command, ["--content", "{root}/empty.png"], "content image", "empty file", name="content-empty"),
          case(command, ["--content", "{root}/folder"], "content image", "directory", name="content-folder"),
          case(command, ["--content", "{root}/tiny1.png"], "content image", "1x1 px", name="content-1px"),
          case(command, ["--content", "{root}/nan.tif"], "nan.tif", "NaN", name="content-nan-tiff"),
          case(command, ["--content", "{root}/inf.tif"], "inf.tif", "infinite", name="content-inf-tiff"),
          case(command, ["--content", "{root}/panorama.png", "--size", "32"], "--size", "1 px",
               name="content-panorama-working-size"),
      ]
    cases += [
        case(command, ["--style", "{root}/missing.png"], "style image", "does not exist", name="style-missing"),
        case(command, ["--style", "{root}/notes.png"], "style image", "not an image", name="style-not-image"),
        case(command, ["--style", "{root}/tiny1.png"], "style image", "1x1 px", name="style-1px"),
        case(command, ["--style", "{root}/tiny3.png"], "style image", "3x3 px", name="style-3px"),
        case(command, ["--style", "{root}/nan.tif"], "style image", "NaN", name="style-nan-tiff"),
        case(command, ["--weights", "{root}/missing.npz"], "missing.npz", name="weights-missing"),
        case(command, ["--weights", "{root}/content.png"], "content.png", "weights", name="weights-not-npz"),
        case(command, ["--weights", "nosuchname"], "nosuchname", name="weights-unknown-name"),
        case(command, ["--weights", "hed-vgg16"], "damaged", "fetch hed-vgg16 --force", name="weights-truncated",
             env={"NST_JAX_WEIGHTS_DIR": "{root}/truncated_weights"}),
        case(command, ["--frobnicate", "1"], "--frobnicate", name="unknown-flag"),
        case(command, ["stray.png"], "stray.png", name="positional-argument"),
        case(command, ["--size", "0"], "--size", "0", name="size-zero"),
        case(command, ["--size", "-7"], "--size", "-7", name="size-negative"),
        case(command, ["--size", "abc"], "--size", "abc", name="size-not-number"),
    ]
  return cases


def stylize_cases() -> list:
  cases = []
  for command in ("stylize", "synthesize"):
    cases += [
        case(command, ["--learning_rate", "-1"], "--learning_rate", "-1", name="learning-rate-negative"),
        case(command, ["--learning_rate", "0"], "--learning_rate", name="learning-rate-zero"),
        case(command, ["--learning_rate", "nan"], "--learning_rate", "nan", name="learning-rate-nan"),
        case(command, ["--style_weight", "nan"], "--style_weight", "nan", name="style-weight-nan"),
        case(command, ["--tv_weight", "inf"], "--tv_weight", "inf", name="tv-weight-inf"),
        case(command, ["--iterations", "-3"], "--iterations", "-3", name="iterations-negative"),
        case(command, ["--style_blend", "1,nan", "--style", "{root}/style.png,{root}/style.png"], "--style_blend",
             "1,nan", name="style-blend-nan"),
        case(command, ["--style_scale", "nan"], "--style_scale", "nan", name="style-scale-nan"),
        case(command, ["--style_masks", "{root}/black.png"], "--style_masks", "black.png", "covers nothing",
             name="mask-all-black"),
        case(command, ["--style_masks", "{root}/nan.tif"], "nan.tif", "NaN", name="mask-nan-tiff"),
        case(command, ["--checkpoint_dir", "{root}/content.png"], "--checkpoint_dir", "not a folder",
             name="checkpoint-dir-is-file"),
        case(command, ["--init", "{root}/nan.tif"], "--init", "NaN", name="init-nan-tiff"),
        case(command, ["--style_layers", "relu9_9"], "--style_layers", "relu9_9", name="style-layer-unknown"),
        case(command, ["--start_size", "16", "--scale_step", "nan"], "--scale_step", "nan", name="scale-step-nan"),
        case(command, ["--max_memory_gb", "nan"], "--max_memory_gb", "nan", name="max-memory-nan"),
    ]
  cases += [
      case("stylize", ["--depth", "{root}/nan.tif"], "depth", "NaN", name="depth-nan-tiff"),
      case("stylize", ["--content_layers", "relu9_9"], "--content_layers", "relu9_9", name="content-layer-unknown"),
      case("stylize", ["--content", "{root}/panorama.png", "--size", "48", "--start_size", "16"], "1 px",
           name="panorama-pyramid-working-size"),
      case("synthesize", ["--content", "{root}/content.png"], "synthesize takes no --content", name="content-flag"),
      case("synthesize", ["--preserve_colors", "luminance"], "--preserve_colors", name="preserve-colors"),
  ]
  return cases


def photoreal_cases() -> list:
  seg = ["--content_seg", "{root}/seg.png", "--style_seg", "{root}/seg2.png"]
  return [
      case("photoreal", ["--iterations", "-3"], "--iterations", "-3", name="iterations-negative"),
      case("photoreal", ["--stage1_iterations", "-3"], "--stage1_iterations", "-3", name="stage1-negative"),
      case("photoreal", ["--style_layers", "relu9_9"], "--style_layers", "relu9_9", name="style-layer-unknown"),
      case("photoreal", ["--content_layers", "nope"], "--content_layers", "nope", name="content-layer-unknown"),
      case("photoreal", ["--learning_rate", "-1"], "--learning_rate", "-1", name="learning-rate-negative"),
      case("photoreal", ["--matting_weight", "nan"], "--matting_weight", "nan", name="matting-weight-nan"),
      case("photoreal", ["--refine_eps", "inf"], "--refine_eps", "inf", name="refine-eps-inf"),
      case("photoreal", ["--stage1_size", "-1"], "--stage1_size", "-1", name="stage1-size-negative"),
      case("photoreal", ["--smooth_radius", "-1"], "--smooth_radius", "-1", name="smooth-radius-negative"),
      case("photoreal", ["--refine_radius", "-1"], "--refine_radius", "-1", name="refine-radius-negative"),
      case("photoreal", ["--content_seg", "{root}/nan.tif", "--style_seg", "{root}/seg2.png"], "nan.tif", "NaN",
           name="content-seg-nan"),
      case("photoreal", [*seg, "--style_seg", "{root}/notes.png"], "--style_seg", "not an image",
           name="style-seg-not-image"),
      case("photoreal", ["--style", "{root}/style.png,{root}/style.png"], "one --style", name="two-styles"),
      case("photoreal", ["--style_layer_weights", "relu1_1=nan"], "--style_layer_weights", name="layer-weight-nan"),
  ]


def feedforward_cases() -> list:
  cases = []
  for command in ("adain", "wct"):
    cases += [
        case(command, ["--max_megapixels", "inf"], "--max_megapixels", "inf", name="max-megapixels-inf"),
        case(command, ["--max_megapixels", "nan"], "--max_megapixels", "nan", name="max-megapixels-nan"),
        case(command, ["--max_megapixels", "-1"], "--max_megapixels", name="max-megapixels-negative"),
        case(command, ["--alpha", "nan"], "--alpha", "nan", name="alpha-nan"),
        case(command, ["--alpha", "2"], "--alpha", "2", name="alpha-above-one"),
        case(command, ["--style_blend", "1,nan", "--style", "{root}/style.png,{root}/style.png"], "--style_blend",
             "1,nan", name="style-blend-nan"),
        case(command, ["--style_masks", "{root}/black.png"], "--style_masks", "covers nothing",
             name="mask-all-black"),
        case(command, ["--style_masks", "{root}/missing.png"], "mask", "does not exist", name="mask-missing"),
        case(command, ["--style_cache", "{root}/content.png"], "--style_cache", "not a folder",
             name="style-cache-is-file"),
        case(command, ["--tile_size", "-8"], "--tile_size", "-8", name="tile-size-negative"),
        case(command, ["--size", "8"], "--size", "8", name="size-eight"),
    ]
  cases += [
      case("adain", ["--decoder", "{root}/flipped_decoder.npz"], "flipped_decoder.npz", "damaged",
           name="decoder-flipped-bytes"),
      case("adain", ["--decoder", "{root}/truncated_decoder.npz"], "truncated_decoder.npz", name="decoder-truncated"),
      case("adain", ["--decoder", "{root}/missing.npz"], "--decoder", name="decoder-missing"),
      case("wct", ["--decoders", "{root}/flipped_decoders.npz"], "flipped_decoders.npz", "damaged",
           name="decoders-flipped-bytes"),
      case("wct", ["--decoders", "{root}/missing.npz"], "--decoders", name="decoders-missing"),
      case("wct", ["--levels", "relu9_1"], "--levels", "relu9_1", name="levels-unknown"),
      case("wct", ["--passes", "0"], "--passes", name="passes-zero"),
      case("wct", ["--deep_scale", "nan"], "--deep_scale", "nan", name="deep-scale-nan"),
      case("wct", ["--style_scale", "nan"], "--style_scale", "nan", name="style-scale-nan"),
  ]
  return cases


def train_wct_cases() -> list:
  return [
      case("train wct", ["--width", "0"], "--width", name="width-zero"),
      case("train wct", ["--batch", "0"], "--batch", name="batch-zero"),
      case("train wct", ["--steps", "-1"], "--steps", name="steps-negative"),
      case("train wct", ["--lr", "-1"], "--lr", name="lr-negative"),
      case("train wct", ["--lr", "nan"], "--lr", "nan", name="lr-nan"),
      case("train wct", ["--pixel_weight", "inf"], "--pixel_weight", "inf", name="pixel-weight-inf"),
      case("train wct", ["--crop", "0"], "--crop", name="crop-zero"),
      case("train wct", ["--levels", "relu9_1"], "--levels", "relu9_1", name="levels-unknown"),
      case("train wct", ["--content_dirs", "{root}/missing"], "missing", "does not exist", name="content-dirs-missing"),
      case("train wct", ["--padding", "circular"], "--padding", name="padding-unknown"),
      case("train wct", ["--weights", "nosuchname"], "nosuchname", name="weights-unknown"),
      case("train wct", ["--init_decoders", "{root}/content.png"], "content.png", "WCT decoder",
           name="init-decoders-not-npz"),
      case("train wct", ["--out_dir", "{root}/content.png"], "--out_dir", "is a file", name="out-dir-is-a-file"),
      case("train wct", ["--export", "{root}/fake.npz"], "--export", "weights file", name="export-is-weights"),
      case("train wct", ["--export", "{root}/content.png"], "--export", "not a WCT decoder file",
           name="export-is-an-image"),
      case("train wct", ["--export", "{root}/folder"], "--export", "is a folder", name="export-is-folder"),
  ]


def train_adain_cases() -> list:
  return [
      case("train adain", ["--cache_gb", "-1"], "--cache_gb", name="cache-gb-negative"),
      case("train adain", ["--batch", "abc"], "--batch", "abc", name="batch-not-number"),
      case("train adain", ["--lr", "nan"], "--lr", "nan", name="lr-nan"),
      case("train adain", ["--stage", "finetune"], "--stage", name="stage-unknown"),
      case("train adain", ["--content_dirs", "{root}/missing"], "missing", "does not exist",
           name="content-dirs-missing"),
      case("train adain", ["--weights", "nosuchname"], "nosuchname", name="weights-unknown"),
      case("train adain", ["--init_decoder", "{root}/missing.npz"], "--decoder", "missing.npz",
           name="init-decoder-missing"),
      case("train adain", ["--init_decoder", "{root}/content.png"], "content.png", name="init-decoder-not-npz"),
      case("train adain", ["--out_dir", "{root}/content.png"], "--out_dir", "is a file", name="out-dir-is-a-file"),
      case("train adain", ["--export", "{root}/fake.npz"], "--export", "--weights", "overwritten",
           name="export-is-weights"),
      case("train adain", ["--export", "{root}/decoder.npz", "--init_decoder", "{root}/decoder.npz"], "--export",
           "--init_decoder", name="export-is-init-decoder"),
      case("train adain", ["--export", "{root}/content.png"], "--export", "not an AdaIN decoder or student file",
           name="export-is-an-image"),
      case("train adain", ["--export", "{root}/folder"], "--export", "is a folder", name="export-is-folder"),
      case("train adain", ["stray"], "stray", name="positional-argument"),
  ]


CASES = (output_cases() + image_file_cases() + stylize_cases() + photoreal_cases() + feedforward_cases()
         + train_wct_cases() + train_adain_cases())


def write_image(path: pathlib.Path, array: np.ndarray) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path)


@pytest.fixture(scope="module")
def inputs(cli_setup, tmp_path_factory) -> pathlib.Path:
  """The battery's input files: tiny images, masks, maps, weights and decoders (never written by any case)."""
  root = tmp_path_factory.mktemp("battery")
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
  for name in ("content.png", "init.png", "photo_00001.png", "photo_stage1.png"):
    write_image(root / name, rgb)
  write_image(root / "style.png", rgb[::-1])
  write_image(root / "mask.png", np.full((24, 32), 255, np.uint8))
  write_image(root / "depth.png", np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (24, 1)))
  seg = np.zeros((24, 32, 3), np.uint8)
  seg[:, 16:] = 255
  write_image(root / "seg.png", seg)
  write_image(root / "seg2.png", seg[:, ::-1])
  write_image(root / "black.png", np.zeros((24, 32), np.uint8))
  write_image(root / "tiny1.png", rgb[:1, :1])
  write_image(root / "tiny3.png", rgb[:3, :3])
  write_image(root / "panorama.png", rng.integers(0, 256, (16, 1024, 3), dtype=np.uint8))
  nan = np.full((24, 32), np.nan, np.float32)
  Image.fromarray(nan, mode="F").save(root / "nan.tif")
  Image.fromarray(np.full((24, 32), np.inf, np.float32), mode="F").save(root / "inf.tif")
  (root / "notes.png").write_text("shopping list: eggs, flour\n")
  (root / "empty.png").write_bytes(b"")
  for folder, image in (("photos", rgb), ("paintings", rgb[::-1])):
    write_image(root / folder / "0.png", image)
  (root / "folder").mkdir()
  (root / "sub").mkdir()
  (root / "link_to_content.png").symlink_to(root / "content.png")
  (root / "fake.npz").write_bytes(pathlib.Path(cli_setup["weights"]).read_bytes())
  adain_decoder.save_decoder(root / "decoder.npz", adain_decoder.DecoderCheckpoint(
      params=adain_decoder.init_decoder("vgg16", 4), arch="vgg16", width=4, encoder_sha256="0" * 64,
      encoder_source="test"))
  level = wct_decoder.LevelDecoder(params=wct_decoder.init_decoder("vgg16", "relu1_1", 4), width=4)
  wct_decoder.save_decoders(root / "decoders.npz", wct_decoder.DecoderSet(
      levels={"relu1_1": level}, arch="vgg16", encoder_sha256="0" * 64, encoder_source="test"))
  for name in ("decoder", "decoders"):
    data = bytearray((root / f"{name}.npz").read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    (root / f"flipped_{name}.npz").write_bytes(bytes(data))
  (root / "truncated_weights").mkdir()
  (root / "truncated_weights" / "hed-vgg16.npz").write_bytes((root / "fake.npz").read_bytes()[:100_000])
  (root / "truncated_decoder.npz").write_bytes((root / "decoder.npz").read_bytes()[:1000])
  return root


def fingerprint(path: pathlib.Path) -> str:
  """The sha256 of a small file; for a large one (the weights) its size, inode, mtime and ctime, which any write
  or replacement changes (ctime cannot be set back), without reading 60 MB for every case."""
  stat = path.stat()
  if stat.st_size < 2**20:
    return hashlib.sha256(path.read_bytes()).hexdigest()
  return f"{stat.st_size}:{stat.st_ino}:{stat.st_mtime_ns}:{stat.st_ctime_ns}"


def snapshot(root: pathlib.Path) -> dict[str, str]:
  """{path relative to root: fingerprint} of every file under root (links followed)."""
  return {str(p.relative_to(root)): fingerprint(p) for p in sorted(root.rglob("*")) if p.is_file()}


def expand(args, root: pathlib.Path, out: pathlib.Path) -> list[str]:
  return [a.format(root=root, out=out) for a in args]


@pytest.mark.parametrize("bad", CASES)
def test_bad_input(cli_setup, inputs, tmp_path, bad: Case):
  out = tmp_path / "out.png"
  before = snapshot(inputs)
  env = {**cli_setup["env"], **{k: v.format(root=inputs) for k, v in bad.env}}
  args = expand(GOOD.get(bad.command, ()) + bad.args, inputs, out)
  proc = run_cli({**cli_setup, "env": env}, *bad.command.split(), *args)  # a command may be two words
  assert "Traceback" not in proc.stderr, proc.stderr
  assert proc.returncode == bad.code, (proc.returncode, proc.stderr)
  if bad.code != 0:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and all(line.startswith(("error: ", "warning: ")) for line in lines), proc.stderr
    for needle in expand(bad.needles, inputs, out):
      assert needle in errors[0], (needle, errors[0])
  assert snapshot(inputs) == before  # no input changed, no file appeared among them
  intended = set(expand(bad.outputs, inputs, out))
  assert {str(p) for p in tmp_path.rglob("*") if p.is_file()} <= intended
