"""Where converted weights live and how a name or path on the command line becomes a `VGGWeights`."""

from __future__ import annotations

import os
import pathlib

from nst_jax.errors import WeightsError
from nst_jax.weights.format import VGGWeights, load_weights
from nst_jax.weights.sources import KNOWN_SOURCES


def weights_dir() -> pathlib.Path:
  """Where weights live.

  $NST_JAX_WEIGHTS_DIR if set; else <repo>/weights when running from a source checkout (setup.cfg next to the
  package); else ~/.cache/nst_jax/weights."""
  env = os.environ.get("NST_JAX_WEIGHTS_DIR")
  if env:
    return pathlib.Path(env).expanduser()
  repo = pathlib.Path(__file__).resolve().parents[2]
  if (repo / "setup.cfg").exists():
    return repo / "weights"
  return pathlib.Path.home() / ".cache" / "nst_jax" / "weights"


def resolve_weights(name_or_path: str) -> VGGWeights:
  """Loads an existing .npz path, or the weight set called NAME from `weights_dir()`."""
  path = pathlib.Path(name_or_path).expanduser()
  if path.is_file():
    return load_weights(path)
  local = weights_dir() / f"{name_or_path}.npz"
  if name_or_path in KNOWN_SOURCES:
    if not local.is_file():
      raise WeightsError(f"weights {name_or_path!r} are not downloaded yet (expected {local}); "
                         f"run `python -m nst_jax weights fetch {name_or_path}`")
    return load_weights(local, damaged_hint=f"run `python -m nst_jax weights fetch {name_or_path} --force`")
  # Names made with `convert --name NAME` resolve too.
  if "/" not in name_or_path and os.sep not in name_or_path and local.is_file():
    return load_weights(local)
  if path.suffix or "/" in name_or_path or os.sep in name_or_path:
    raise WeightsError(f"{name_or_path}: no such weights file")
  raise WeightsError(f"unknown weights {name_or_path!r}: not a file and not a known name "
                     f"({', '.join(KNOWN_SOURCES)}); see `python -m nst_jax weights list`")



REPO_WEIGHTS = pathlib.Path(__file__).resolve().parents[2] / "weights"  # where the project's trained files ship


def find_trained_file(name_or_path: str) -> pathlib.Path | None:
  """An existing file at `name_or_path`, else NAME.npz in `weights_dir()` or the checkout's weights/ folder.

  The project's trained decoders ship in the source checkout's weights/ folder; None when neither exists."""
  path = pathlib.Path(name_or_path).expanduser()
  if path.is_file():
    return path
  if "/" not in name_or_path and os.sep not in name_or_path and not path.suffix:
    for folder in (weights_dir(), REPO_WEIGHTS):
      if (folder / f"{name_or_path}.npz").is_file():
        return folder / f"{name_or_path}.npz"
  return None
