"""Atomic file writes: write to a temporary file beside the target, then rename.

Readers, and a crash or Ctrl-C half-way, therefore never see a half-written image, weights file, checkpoint,
figure or JSON record. Every file nst_jax writes goes through `atomic_write` (directly or through the helpers
below).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import secrets
from collections.abc import Callable, Iterator
from typing import IO, Any


def _create_temp_beside(path: pathlib.Path, suffix: str = ".tmp") -> tuple[int, str]:
  """A new, empty file next to `path` (same filesystem, so the final rename is atomic), opened for writing.

  Not tempfile.mkstemp: it creates files with mode 0600 and the rename would carry that onto the result, leaving
  a file that other users (a web server, a shared folder) cannot read. 0666 minus the umask is what a plain
  open() would give.
  """
  for _ in range(100):
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}"
    try:
      return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), str(tmp)
    except FileExistsError:
      continue
  raise FileExistsError(f"no free temporary name next to {path}")


_open_writes = [0]  # atomic writes in progress in this process


def writing() -> bool:
  """Whether an `atomic_write` is in progress: a Ctrl-C handler then lets its cleanup run before leaving."""
  return _open_writes[0] > 0


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *,
                 verify: Callable[[pathlib.Path], None] | None = None) -> Iterator[IO]:
  """A context manager: `with atomic_write(p) as f: f.write(...)` replaces `p` only if the block completes.

  `verify(temporary path)` runs after the file is closed and before it replaces `p`; an exception there keeps the
  old `p` (a download whose checksum does not match is never published). `mode` is the temporary file's open mode."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  _open_writes[0] += 1
  try:
    fd, tmp = _create_temp_beside(path)
    try:
      with os.fdopen(fd, mode) as f:
        yield f
      if verify is not None:
        verify(pathlib.Path(tmp))
      os.replace(tmp, path)
    finally:
      if os.path.exists(tmp):
        os.unlink(tmp)
  finally:
    _open_writes[0] -= 1


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
  """`with atomic_path(p) as tmp: writer(tmp)` for writers that take a file name rather than a file object (ffmpeg):
  `tmp` is a new empty file beside `p` whose name ends in `p`'s extension, so the writer picks the same format;
  it replaces `p` only if the block completes."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  _open_writes[0] += 1
  try:
    fd, tmp = _create_temp_beside(path, suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
      yield pathlib.Path(tmp)
      os.replace(tmp, path)
    finally:
      if os.path.exists(tmp):
        os.unlink(tmp)
  finally:
    _open_writes[0] -= 1


def write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
  """Writes `text` to `path` atomically; returns the path."""
  with atomic_write(path, "w") as f:
    f.write(text)
  return pathlib.Path(path)


def write_json(path: str | os.PathLike, obj: Any, *, sort_keys: bool = True, strict: bool = False) -> pathlib.Path:
  """Writes `obj` as indented JSON, atomically; returns the path.

  With `strict`, NaN and infinities are an error (standard JSON) instead of being written as NaN."""
  with atomic_write(path, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=sort_keys, default=float, allow_nan=not strict)
    f.write("\n")
  return pathlib.Path(path)


def write_figure(fig: Any, path: str | os.PathLike, **savefig_options: Any) -> pathlib.Path:
  """Writes a matplotlib figure (`fig.savefig`) atomically, in the format of the file's extension."""
  path = pathlib.Path(path)
  with atomic_write(path) as f:
    fig.savefig(f, format=path.suffix.lstrip(".").lower() or "png", **savefig_options)
  return path
