"""Input files are never written: a bad `--output` is refused before any work.

An output that is a folder, or that resolves to a file another flag reads (content, style, masks, segmentation,
depth, initial image, weights, decoders, checkpoint), is an error. Stdlib only, so that the check costs nothing
before JAX is imported.
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Iterable, Iterator

from nst_jax.errors import NSTError

# Files a command writes next to --output besides it: <stem>_00042<ext> (intermediate images, the last finite
# image) and <stem>_stage1<ext> (photoreal --save_stages).
DERIVED_SUFFIX = r"_(?:\d{5}|stage\d)"


def flag_paths(values: dict[str, object], names: Iterable[str]) -> Iterator[tuple[str, pathlib.Path]]:
  """(flag, path) for each value of the flags `names` that names an existing file or folder.

  Values may be strings or lists of strings; values that are names (`--weights hed-vgg16`) or keywords (`--init
  colors`) are skipped."""
  for name in names:
    value = values.get(name)
    for item in value if isinstance(value, (list, tuple)) else [value]:
      if isinstance(item, str) and item and os.path.exists(item):
        yield name, pathlib.Path(item)


def same_file(a: pathlib.Path, b: pathlib.Path) -> bool:
  """Whether `a` and `b` are one file: through links and hard links when both exist, else by resolved path."""
  try:
    return os.path.samefile(a, b)
  except OSError:
    return a.resolve() == b.resolve()


def derived_from(output: pathlib.Path, path: pathlib.Path) -> bool:
  """Whether `path` has the name of a file the command may write beside `output` (`DERIVED_SUFFIX`)."""
  if output.absolute().parent.resolve() != path.absolute().parent.resolve():
    return False
  pattern = re.escape(output.stem) + DERIVED_SUFFIX + re.escape(output.suffix)
  return re.fullmatch(pattern, path.name, flags=re.IGNORECASE) is not None


def check_output(output: str, inputs: Iterable[tuple[str, pathlib.Path]], *, folder_ok: bool = False) -> None:
  """Raises NSTError when `output` is a folder (unless `folder_ok`) or would overwrite one of `inputs` ((flag,
  path) pairs)."""
  path = pathlib.Path(output)
  if path.is_dir() and not folder_ok:
    raise NSTError(f"--output {output!r} is a folder; give a file path in it, e.g. "
                   f"{str(path / ('out' + (path.suffix or '.png')))!r}")
  for flag, source in inputs:
    if source.is_dir():
      continue
    if same_file(path, source):
      raise NSTError(f"--output {output!r} is the --{flag} file {str(source)!r}: it would be overwritten; choose "
                     "another output path")
    if derived_from(path, source):
      raise NSTError(f"--output {output!r} would write intermediate images named like the --{flag} file "
                     f"{str(source)!r} and overwrite it; choose another output path")


def check_flags(values: dict[str, object], input_flags: Iterable[str], *, folder_ok: bool = False) -> None:
  """`check_output` for a command's parsed flag `values` (name: value), when it has an --output flag."""
  if values.get("output"):
    check_output(str(values["output"]), flag_paths(values, input_flags), folder_ok=folder_ok)
