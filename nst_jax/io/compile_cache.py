"""A persistent XLA compilation cache for the command line, so that a second run does no compilation.

JAX compiles every jitted function for each new input shape; on a CPU that can take longer than running it (an
AdaIN stylisation). With a cache folder, compiled executables are written to disk and a later process with the
same program, shapes and JAX version loads them instead.

The folder is, in order: the `--compilation_cache` flag, the NST_JAX_COMPILATION_CACHE environment variable,
$XDG_CACHE_HOME/nst_jax/xla, ~/.cache/nst_jax/xla. The value 'off' (or '0', 'none', 'false', '') disables it.
"""

from __future__ import annotations

import os
import pathlib

import jax

from nst_jax.errors import NSTError

ENV = "NST_JAX_COMPILATION_CACHE"
_OFF = ("", "0", "off", "none", "false", "no")


def default_dir() -> pathlib.Path:
  """$XDG_CACHE_HOME/nst_jax/xla, or ~/.cache/nst_jax/xla: a per-user folder."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return pathlib.Path(base) / "nst_jax" / "xla"


def resolve(flag: str | None) -> pathlib.Path | None:
  """The cache folder to use (None: off), from the flag value, else the environment, else the default."""
  value = flag if flag is not None else os.environ.get(ENV)
  if value is None:
    return default_dir()
  if value.strip().lower() in _OFF:
    return None
  return pathlib.Path(value).expanduser()


def enable(folder: pathlib.Path | None, *, min_compile_time_secs: float = 0.0) -> pathlib.Path | None:
  """Points JAX's persistent compilation cache at `folder` (created if needed); None turns it off.

  Every compilation that took at least `min_compile_time_secs` is cached (by default every one, however short, so
  that a second command compiles nothing). Returns the folder in use."""
  if folder is None:
    jax.config.update("jax_enable_compilation_cache", False)
    return None
  try:
    folder.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise NSTError(f"--compilation_cache {str(folder)!r}: cannot create the folder ({e.strerror})") from None
  if not os.access(folder, os.W_OK):
    raise NSTError(f"--compilation_cache {str(folder)!r}: the folder is not writable")
  jax.config.update("jax_enable_compilation_cache", True)
  jax.config.update("jax_compilation_cache_dir", str(folder))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_time_secs)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return folder
