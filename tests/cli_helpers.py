"""Helpers of the command-line tests (cli_test.py, cli_errors_test.py): running `python -m nst_jax` in this
process or in a new one, and checking one-line errors. Their fixtures (a tiny random VGG16, two images, a tiny
AdaIN decoder) are in conftest.py."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
from PIL import Image

from nst_jax.cli import main as cli_main
from nst_jax.io import image_io

REPO = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT_S = 180
# Two Adam steps from the content move each pixel by at most ~2 x learning rate; plus 8-bit rounding.
CONTENT_TOLERANCE = 0.08
FAST = ["--optimizer", "adam", "--iterations", "2", "--size", "32", "--content_layers", "relu1_2",
        "--style_layers", "relu1_1,relu2_1"]
# The same for synthesize, which has no content flags.
FAST_SYNTHESIS = ["--optimizer", "adam", "--iterations", "2", "--size", "32", "--style_layers", "relu1_1,relu2_1"]
# For tests that compare the output with the content: start from the content itself (the default start is the
# content in the style's colours plus noise).
FROM_CONTENT = ["--init", "content", "--init_noise", "0"]
ABSL_LOG_PREFIX = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d")  # absl's "I1201 13:52:35.262293 1401... file.py:12]"


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


def run_cli(cli_setup: dict, *args: str) -> Result:
  """`python -m nst_jax ARGS` in this process: the exit status and what it wrote."""
  out, err = io.StringIO(), io.StringIO()
  with environment(cli_setup["env"]), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code = cli_main.main(list(args))
  return Result(code, out.getvalue(), err.getvalue())


def run_process(cli_setup: dict, *args: str, module: str = "nst_jax") -> subprocess.CompletedProcess:
  """The same in a new Python process, as a user starts it."""
  # Tiny images: the CPU is fastest to start, and probing for accelerators would only cost start-up time.
  env = dict(os.environ, **cli_setup["env"], JAX_PLATFORMS="cpu")
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



def read_output(path: pathlib.Path, size: tuple[int, int]) -> np.ndarray:
  """The written image as float RGB, after checking that it is a complete image of (height, width) `size`."""
  with Image.open(path) as im:
    im.load()  # decodes every byte: a truncated file fails here
    assert (im.height, im.width) == size and im.mode == "RGB", (im.size, im.mode)
    return np.asarray(im, dtype=np.float32) / 255.0


def expected_content(path: pathlib.Path, size: int = 32) -> np.ndarray:
  return image_io.resize_long_side(image_io.load_image(path), size)



def write_seg(path, h: int, w: int) -> None:
  seg = np.zeros((h, w, 3), np.uint8)
  seg[:, w // 2:] = 255  # black | white
  Image.fromarray(seg).save(path)

