"""A dependency-free progress line for long optimisations, printed to stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping


class ProgressBar:
  """Redraws one line in a terminal; prints one line per update when stderr is not a terminal (logs, CI)."""

  def __init__(self, total: int, *, label: str = "", stream=None, width: int = 24):
    self.total = max(total, 1)
    self.label = label
    self.stream = stream if stream is not None else sys.stderr
    self.width = width
    self.start = time.perf_counter()
    self.interactive = hasattr(self.stream, "isatty") and self.stream.isatty()

  def update(self, done: int, values: Mapping[str, float] | None = None) -> None:
    elapsed = time.perf_counter() - self.start
    filled = int(self.width * done / self.total)
    bar = "#" * filled + "." * (self.width - filled)
    rate = f"{done / elapsed:.2f} it/s" if elapsed > 0 and done else ""
    terms = " ".join(f"{k} {v:.4g}" for k, v in (values or {}).items())
    line = f"{self.label}{done:>6}/{self.total} [{bar}] {terms} {rate}".rstrip()
    if self.interactive:
      self.stream.write("\r\033[K" + line)
    else:
      self.stream.write(line + "\n")
    self.stream.flush()

  def close(self) -> None:
    if self.interactive:
      self.stream.write("\n")
      self.stream.flush()
