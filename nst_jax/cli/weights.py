"""`python -m nst_jax weights`: fetch, convert, list and describe weight sets.

  python -m nst_jax weights fetch [NAME] [--force]    download (or reuse) and convert a known weight set
  python -m nst_jax weights convert FILE [--name NAME] [--output PATH] [--dtype float16]
  python -m nst_jax weights list                       known weight sets and whether they are present
  python -m nst_jax weights info FILE_OR_NAME          what a weights file holds

A command of the main command line (not of the weights package), so that the weights layer stays below the CLI.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from absl import flags

from nst_jax.cli import output_guard
from nst_jax.cli.command import Command, Sections
from nst_jax.errors import NSTError
from nst_jax.weights.converters import convert_file
from nst_jax.weights.fetch import download_cache_dir, fetch
from nst_jax.weights.format import DTYPES, VGGWeights, extra_names, load_weights, save_weights
from nst_jax.weights.sources import KNOWN_SOURCES
from nst_jax.weights.store import resolve_weights, weights_dir

USAGE = "fetch [NAME] | convert FILE | list | info FILE_OR_NAME"


def describe(weights: VGGWeights) -> list[str]:
  """Lines describing a weight set for `info`: architecture, preprocessing, source, extras, array count."""
  arrays = [a for layer in weights.params.values() for a in layer.values()] + list(weights.extras.values())
  p = weights.preprocessing
  return [f"arch: {weights.arch}",
          f"preprocessing: {p.channel_order}, x{p.input_scale:g}, mean {p.mean}, std {p.std}",
          f"source: {weights.source}",
          f"source sha256: {weights.source_sha256}",
          f"extras: {', '.join(extra_names(weights.extras)) or 'none'}",
          f"arrays: {len(arrays)} ({sum(a.size for a in arrays):,} parameters)"]


def define_flags(fv: flags.FlagValues) -> Sections:
  """Defines the command's flags on `fv`; returns the help sections."""
  flags.DEFINE_boolean("force", False, "fetch: convert again even if NAME.npz exists.", flag_values=fv)
  flags.DEFINE_string("name", None, "convert: name of the weight set (default: the input file's stem).",
                      flag_values=fv)
  flags.DEFINE_string("output", None, "convert: output path (default: <weights folder>/<name>.npz).", flag_values=fv)
  flags.DEFINE_enum("dtype", "float32", list(DTYPES), "convert: stored precision (float16 halves the file; loading "
                    "gives float32 either way).", flag_values=fv)
  return [("fetch", ["force"]), ("convert", ["name", "output", "dtype"])]


def run(fv: flags.FlagValues, args: list[str]) -> None:
  """Runs the subcommand in `args` (fetch, convert, list or info); NSTError for an unknown one."""
  if not args:
    raise NSTError(f"no command; expected one of: {USAGE}")
  command, rest = args[0], args[1:]
  if command == "fetch" and len(rest) <= 1:
    print(fetch(*rest, force=fv.force))
  elif command == "convert" and len(rest) == 1:
    source = pathlib.Path(rest[0])
    out = pathlib.Path(fv.output) if fv.output else weights_dir() / f"{fv.name or source.stem}.npz"
    if out.is_dir():
      raise NSTError(f"convert: the output {str(out)!r} is a folder; give a file path (--output) or a --name")
    if output_guard.same_file(out, source):
      raise NSTError(f"convert: the output {str(out)!r} is the file being converted: it would be overwritten; give "
                     "another --output or --name")
    weights = convert_file(source)
    save_weights(out, weights, dtype=fv.dtype)
    load_weights(out)
    print(f"wrote {out} ({weights.arch}, {weights.preprocessing.channel_order} input, {fv.dtype}, sha256 of source "
          f"{weights.source_sha256[:12]}...)")
  elif command == "list" and not rest:
    directory = weights_dir()
    print(f"weights directory: {directory} (downloaded originals: {download_cache_dir()})")
    local = sorted(p.stem for p in directory.glob("*.npz")) if directory.is_dir() else []
    others = [stem for stem in local if stem not in KNOWN_SOURCES]
    width = max(len(name) for name in [*KNOWN_SOURCES, *others])
    for known, source in KNOWN_SOURCES.items():
      state = "present" if (directory / f"{known}.npz").is_file() else "missing"
      print(f"{known:{width}}  {state:8} {source.description} <{source.url}>")
    for other in others:
      print(f"{other:{width}}  {'present':8} {file_kind(directory / f'{other}.npz')}")
  elif command == "info" and len(rest) == 1:
    for line in describe(resolve_weights(rest[0])):
      print(line)
  elif command in ("fetch", "convert", "list", "info"):
    raise NSTError(f"wrong arguments for {command!r}; usage: {USAGE}")
  else:
    raise NSTError(f"unknown command {command!r}; expected one of: {USAGE}")


# What `list` says of an .npz that is not a known download, by the "format" field of its metadata.
KINDS = {"nst_jax-vgg-weights": "VGG weights, converted locally", "nst_jax-adain-decoder": "AdaIN decoder",
         "nst_jax-wct-decoders": "WCT decoders", "nst_jax-adain-student": "AdaIN student encoder"}


def file_kind(path: pathlib.Path) -> str:
  """A few words on what the state file at `path` holds, read from its metadata entry alone."""
  try:
    with np.load(path, allow_pickle=False) as npz:
      fmt = json.loads(str(npz["__meta__"])).get("format", "nst_jax-vgg-weights")  # old weights have no field
  except Exception:  # pylint: disable=broad-except  # a listing reports any unreadable file the same way
    return "unreadable (not an nst_jax .npz, or damaged)"
  return KINDS.get(fmt, f"other nst_jax file ({fmt})")


COMMAND = Command(name="weights", prog="python -m nst_jax weights", usage=USAGE + " [flags]",
                  define_flags=define_flags, run=run, positional=True, compilation_cache=False,
                  description="Converted weights live in the weights folder ($NST_JAX_WEIGHTS_DIR, else weights/ in a "
                  "source checkout, else ~/.cache/nst_jax/weights); downloaded originals in the download cache "
                  "($NST_JAX_CACHE_DIR, else ~/.cache/nst_jax/downloads).")
