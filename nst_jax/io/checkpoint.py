"""The one on-disk format of every state nst_jax saves.

Converted VGG weights, the AdaIN and WCT decoders, training checkpoints and high-resolution resume state are all
NumPy `.npz` archives (a zip of `.npy` arrays, readable with numpy alone; nothing is pickled):

  __meta__   a 0-d unicode array holding one JSON object with
               "format":          the kind of state, e.g. "nst_jax-adain-decoder" (see the writers' FORMAT constants)
               "format_version":  an integer; a reader refuses versions it does not know
             and the kind's own fields (architecture, step, fingerprint of the request, ...).
  NAME       one array per entry. Nested state (parameters, optimizer state) is flattened to "/"-joined key paths,
             e.g. "params/dec4_1/kernel" or "opt_state/0/mu/dec4_1/kernel" (`flatten_tree`, `restore_tree`).

Files are written atomically (`nst_jax.io.atomic`) and read strictly: a file that is not an archive, has no or
unreadable metadata, is of another kind or of an unknown version fails with one line naming the file and what to
do. Files from before this format (weights without "format", AdaIN training checkpoints with "leaf0000"...
arrays) still load; see the readers.
"""

from __future__ import annotations

import json
import os
import pathlib
import zipfile
import zlib
from collections.abc import Collection, Mapping
from typing import Any

import jax
import numpy as np

from nst_jax.errors import NSTError
from nst_jax.io import atomic

META_KEY = "__meta__"


def write(path: str | os.PathLike, *, kind: str, version: int, arrays: Mapping[str, Any],
          meta: Mapping[str, Any] | None = None, compress: bool = False) -> pathlib.Path:
  """Writes `arrays` (numpy or jax) and `meta` (JSON-able) as a state file of `kind`, atomically."""
  if META_KEY in arrays:
    raise ValueError(f"{META_KEY!r} is reserved for the metadata")
  header = {"format": kind, "format_version": int(version), **dict(meta or {})}
  save = np.savez_compressed if compress else np.savez
  with atomic.atomic_write(path) as f:
    save(f, **{META_KEY: np.array(json.dumps(header))}, **{k: np.asarray(v) for k, v in arrays.items()})
  return pathlib.Path(path)


def _starts_like_zip(path: str | os.PathLike) -> bool:
  try:
    with open(path, "rb") as f:
      return f.read(4) == b"PK\x03\x04"
  except OSError:
    return False


def read(path: str | os.PathLike, *, what: str, hint: str = "", error: type[NSTError] = NSTError,
         damaged_hint: str = "") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """(metadata, arrays) of a state file, after checking that it is one.

  Args:
    path: the file.
    what: names the kind in messages ("AdaIN decoder").
    hint: what to do instead, for a file that is no archive.
    error: the exception type raised.
    damaged_hint: how to replace an archive whose data is damaged (default: an intact copy).
  """
  where = str(path)
  hint = f"; {hint}" if hint else ""
  try:
    npz = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    if _starts_like_zip(path):  # an archive cut short or altered, not a file of another kind
      raise error(f"{where}: damaged {what} file ({type(e).__name__}: {e}); "
                  f"{damaged_hint or 'replace it with an intact copy'}") from None
    raise error(f"{where}: not an nst_jax {what} .npz ({type(e).__name__}: {e}){hint}") from None
  if not isinstance(npz, np.lib.npyio.NpzFile):
    raise error(f"{where}: not an nst_jax {what} .npz (a single array){hint}")
  with npz:
    if META_KEY not in npz.files:
      raise error(f"{where}: no {META_KEY!r} entry, so not an nst_jax {what} file{hint}")
    try:
      raw = npz[META_KEY]
    except ValueError as e:  # an object array, which allow_pickle=False refuses
      raise error(f"{where}: cannot read {META_KEY!r} ({e})") from None
    arrays = {}
    for key in npz.files:
      if key == META_KEY:
        continue
      try:
        arrays[key] = npz[key]
      except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:  # an object array, damaged bytes
        raise error(f"{where}: damaged {what} file: array {key!r} cannot be read ({type(e).__name__}: {e}); "
                    f"{damaged_hint or 'replace it with an intact copy'}") from None
  if raw.shape != () or raw.dtype.kind != "U":
    raise error(f"{where}: {META_KEY!r} must be a JSON string, got an array of {raw.dtype} {raw.shape}")
  try:
    meta = json.loads(str(raw))
  except json.JSONDecodeError as e:
    raise error(f"{where}: {META_KEY!r} is not valid JSON ({e})") from None
  if not isinstance(meta, dict):
    raise error(f"{where}: {META_KEY!r} must be a JSON object")
  return meta, arrays


def check_format(meta: Mapping[str, Any], *, path: str | os.PathLike, kind: str, versions: Collection[int],
                 what: str, error: type[NSTError] = NSTError, legacy: bool = False) -> int:
  """The file's format version, after checking its kind and that this reader knows the version.

  With `legacy`, the metadata of a file from before this format (no "format" field) is accepted as version 0."""
  if "format" not in meta and legacy:
    return 0
  if meta.get("format") != kind:
    found = f"a {meta['format']} file" if isinstance(meta.get("format"), str) else "another kind of file"
    raise error(f"{path}: not an nst_jax {what} ({found}; metadata format is not {kind!r})")
  version = meta.get("format_version")
  if version not in versions:
    raise error(f"{path}: {what} format_version {version!r} is not supported (this nst_jax reads "
                f"{', '.join(map(str, sorted(versions)))}); write it again with this version")
  return int(version)


def _key(entry: Any) -> str:
  for attribute in ("key", "idx", "name"):  # DictKey, SequenceKey / FlattenedIndexKey, GetAttrKey
    if hasattr(entry, attribute):
      return str(getattr(entry, attribute))
  return str(entry)


def flatten_tree(tree: Any, prefix: str) -> dict[str, np.ndarray]:
  """{"prefix/key/path": leaf} for every leaf of a pytree (dicts, lists, tuples, named tuples), as host arrays."""
  leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]
  return {"/".join([prefix, *(_key(entry) for entry in path)]): np.asarray(leaf) for path, leaf in leaves}


def restore_tree(template: Any, arrays: Mapping[str, np.ndarray], prefix: str, *, where: str,
                 error: type[NSTError] = NSTError) -> Any:
  """The pytree of `template`'s structure with the leaves `flatten_tree(tree, prefix)` saved.

  Each leaf is checked against the template's shape. Files from before this format hold the leaves as "leaf0000",
  "leaf0001", ... in flattening order; those are restored by order."""
  paths, treedef = jax.tree_util.tree_flatten_with_path(template)
  keys = ["/".join([prefix, *(_key(entry) for entry in path)]) for path, _ in paths]
  if keys and keys[0] not in arrays and "leaf0000" in arrays:
    keys = [f"leaf{i:04d}" for i in range(len(paths))]
  leaves = []
  for key, (_, like) in zip(keys, paths):
    if key not in arrays:
      raise error(f"{where}: array {key!r} is missing (the file was saved for other settings)")
    value = arrays[key]
    if tuple(value.shape) != tuple(np.shape(like)):
      raise error(f"{where}: array {key!r} has shape {tuple(value.shape)}, expected {tuple(np.shape(like))}")
    leaves.append(value)
  return jax.tree_util.tree_unflatten(treedef, leaves)
