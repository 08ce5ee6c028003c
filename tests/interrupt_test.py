"""Ctrl-C at any moment of a command (while importing, compiling, iterating) ends with exit status 130 and one line
saying where the last saved image is: never a traceback, never a crash. Each case starts `python -m nst_jax` and
sends SIGINT, as a terminal does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from cli_helpers import REPO

TIMEOUT_S = 120


def start(cli_setup, output, *extra: str) -> subprocess.Popen:
  root = cli_setup["root"]
  env = dict(os.environ, **cli_setup["env"], JAX_PLATFORMS="cpu")
  return subprocess.Popen(
      [sys.executable, "-m", "nst_jax", "stylize", "--content", str(root / "content.png"), "--style",
       str(root / "style.png"), "--weights", str(cli_setup["weights"]), "--output", str(output), "--size", "32",
       "--optimizer", "adam", "--iterations", "100000", "--log_every", "1", "--content_layers", "relu1_2",
       "--style_layers", "relu1_1,relu2_1", *extra],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def interrupt(proc: subprocess.Popen) -> tuple[int, str]:
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=TIMEOUT_S)
  return proc.returncode, err


def assert_interrupted(code: int, err: str, *needles: str) -> None:
  assert code == 130, (code, err)
  assert "Traceback" not in err and "Segmentation" not in err, err
  # Progress bars redraw with carriage returns; the last line is the error.
  lines = [line.split("\r")[-1] for line in err.splitlines() if line.split("\r")[-1].strip()]
  errors = [line for line in lines if line.startswith("error:")]
  assert len(errors) == 1 and errors[0] == lines[-1], err
  for needle in needles:
    assert needle in errors[0], (needle, errors[0])


def wait_for(predicate, timeout: float = TIMEOUT_S) -> None:
  end = time.monotonic() + timeout
  while not predicate():
    assert time.monotonic() < end, "timed out"
    time.sleep(0.05)


@pytest.mark.parametrize("delay", [0.2, 2.5])
def test_interrupt_while_starting(cli_setup, tmp_path, delay):
  """Early (importing JAX) and later (compiling): nothing saved yet."""
  proc = start(cli_setup, tmp_path / "out.png")
  time.sleep(delay)
  code, err = interrupt(proc)
  assert_interrupted(code, err, "interrupted")
  assert not (tmp_path / "out.png").exists()


def test_interrupt_while_iterating_names_the_last_saved_image(cli_setup, tmp_path):
  proc = start(cli_setup, tmp_path / "out.png", "--save_every", "2")
  wait_for(lambda: any(tmp_path.glob("out_*.png")))
  code, err = interrupt(proc)
  saved = sorted(tmp_path.glob("out_*.png"))
  assert_interrupted(code, err, "the last saved image is", str(tmp_path / "out_"))
  assert str(saved[-1]) in err or str(saved[-2]) in err, (saved, err)
