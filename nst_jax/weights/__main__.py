"""`python -m nst_jax.weights`: fetch, convert, list and describe weight sets.

  python -m nst_jax.weights fetch [NAME] [--force]    download (or reuse) and convert a known weight set
  python -m nst_jax.weights convert FILE [--name NAME] [--output PATH]
  python -m nst_jax.weights list                       known weight sets and whether they are present
  python -m nst_jax.weights info FILE_OR_NAME          what a weights file holds
"""

from __future__ import annotations

import pathlib

from absl import app, flags

from nst_jax.errors import NSTError, exit_on_error
from nst_jax.weights.converters import convert_file
from nst_jax.weights.fetch import fetch
from nst_jax.weights.format import VGGWeights, extra_names, load_weights, save_weights
from nst_jax.weights.sources import KNOWN_SOURCES
from nst_jax.weights.store import resolve_weights, weights_dir


def _describe(weights: VGGWeights) -> list[str]:
  arrays = [a for layer in weights.params.values() for a in layer.values()] + list(weights.extras.values())
  p = weights.preprocessing
  return [f"arch: {weights.arch}",
          f"preprocessing: {p.channel_order}, x{p.input_scale:g}, mean {p.mean}, std {p.std}",
          f"source: {weights.source}",
          f"source sha256: {weights.source_sha256}",
          f"extras: {', '.join(extra_names(weights.extras)) or 'none'}",
          f"arrays: {len(arrays)} ({sum(a.size for a in arrays):,} parameters)"]


def _run_command(args: list[str], *, force: bool, name: str | None, output: str | None) -> None:
  commands = "fetch [NAME], convert FILE, list, info FILE_OR_NAME"
  if not args:
    raise NSTError(f"no command; expected one of: {commands}")
  command, rest = args[0], args[1:]
  if command == "fetch" and len(rest) <= 1:
    print(fetch(*rest, force=force))
  elif command == "convert" and len(rest) == 1:
    source = pathlib.Path(rest[0])
    weights = convert_file(source)
    out = pathlib.Path(output) if output else weights_dir() / f"{name or source.stem}.npz"
    save_weights(out, weights)
    load_weights(out)
    print(f"wrote {out} ({weights.arch}, {weights.preprocessing.channel_order} input, sha256 of source "
          f"{weights.source_sha256[:12]}...)")
  elif command == "list" and not rest:
    directory = weights_dir()
    print(f"weights directory: {directory}")
    for known, source in KNOWN_SOURCES.items():
      state = "present" if (directory / f"{known}.npz").is_file() else "missing"
      print(f"{known:18} {state:8} {source.description} <{source.url}>")
    local = sorted(p.stem for p in directory.glob("*.npz")) if directory.is_dir() else []
    for other in (stem for stem in local if stem not in KNOWN_SOURCES):
      print(f"{other:18} present  converted locally")
  elif command == "info" and len(rest) == 1:
    for line in _describe(resolve_weights(rest[0])):
      print(line)
  elif command in ("fetch", "convert", "list", "info"):
    raise NSTError(f"wrong arguments for {command!r}; usage: {commands}")
  else:
    raise NSTError(f"unknown command {command!r}; expected one of: {commands}")


def _define_flags() -> None:
  # Defined only when run as a program, so importing this module adds no global absl flags.
  flags.DEFINE_boolean("force", False, "fetch: convert again even if NAME.npz exists.")
  flags.DEFINE_string("name", None, "convert: name of the weight set (default: the input file's stem).")
  flags.DEFINE_string("output", None, "convert: output path (default: weights_dir()/<name>.npz).")


def _main(argv: list[str]) -> None:
  with exit_on_error():
    _run_command(argv[1:], force=flags.FLAGS.force, name=flags.FLAGS.name, output=flags.FLAGS.output)


if __name__ == "__main__":
  _define_flags()
  app.run(_main)
