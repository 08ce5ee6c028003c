"""Atomic file writes: write to a temporary file beside the target, then rename, so that readers (and a crash or
Ctrl-C half-way) never leave a half-written image, weights file, checkpoint or JSON record behind."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import secrets
from collections.abc import Iterator
from typing import IO, Any


def create_temp_beside(path: str | os.PathLike, suffix: str = ".tmp") -> tuple[int, str]:
  """A new, empty file next to `path` (same filesystem, so the final rename is atomic), opened for writing.

  Not tempfile.mkstemp: it creates files with mode 0600 and the rename would carry that onto the result, leaving
  a file that other users (a web server, a shared folder) cannot read. 0666 minus the umask is what a plain
  open() would give.
  """
  path = pathlib.Path(path)
  for _ in range(100):
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}"
    try:
      return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), str(tmp)
    except FileExistsError:
      continue
  raise FileExistsError(f"no free temporary name next to {path}")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
  """`with atomic_write(p) as f: f.write(...)` replaces `p` only if the block completes."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = create_temp_beside(path)
  try:
    with os.fdopen(fd, mode) as f:
      yield f
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)


def write_json(path: str | os.PathLike, obj: Any) -> pathlib.Path:
  with atomic_write(path, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=float)
    f.write("\n")
  return pathlib.Path(path)
