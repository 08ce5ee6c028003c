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
import os
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
    "synthesize": ("--style", "{root}/style.png", "--output", "{out}", "--weights", "{root}/fake.npz", *FAST),
    "photoreal": ("--content", "{root}/content.png", "--style", "{root}/style.png", "--output", "{out}",
                  "--weights", "{root}/fake.npz", "--size", "32", "--optimizer", "adam", "--iterations", "1"),
    "adain": ("--content", "{root}/content.png", "--style", "{root}/style.png", "--output", "{out}",
              "--weights", "{root}/fake.npz", "--decoder", "{root}/decoder.npz"),
    "wct": ("--content", "{root}/content.png", "--style", "{root}/style.png", "--output", "{out}",
            "--weights", "{root}/fake.npz", "--decoders", "{root}/decoders.npz"),
}
IMAGE_COMMANDS = tuple(GOOD)  # the commands that write one image to --output


@dataclasses.dataclass(frozen=True)
class Case:
  command: str
  args: tuple[str, ...]
  needles: tuple[str, ...]
  code: int = 2
  outputs: tuple[str, ...] = ()  # files the case may write (status 0)


def case(command: str, args: list[str] | tuple[str, ...], *needles: str, name: str, code: int = 2,
         outputs: tuple[str, ...] = ()):
  return pytest.param(Case(command, tuple(args), needles, code, outputs), id=f"{command}-{name}")


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
      case("stylize", ["--output", "{root}/depth.png", "--depth", "{root}/depth.png"], "--depth", name="output-is-depth"),
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


CASES = output_cases()


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
  proc = run_cli(cli_setup, bad.command, *expand(GOOD.get(bad.command, ()) + bad.args, inputs, out))
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
