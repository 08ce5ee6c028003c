"""The one exception type that command-line entry points turn into a one-line message, and the guard they use."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


class NSTError(Exception):
  """A problem with the user's input or environment, explained in one line.

  Command-line entry points print `error: <message>` and exit with status 2 instead of a traceback. Library callers
  can catch it like any other exception."""


class WeightsError(NSTError):
  """A weights file is missing, malformed or cannot be obtained; the message names the file and the key."""


def one_line(message: str) -> str:
  """`message` with its line breaks turned into spaces (a library message may span several lines)."""
  return " ".join(str(message).splitlines())


@contextlib.contextmanager
def exit_on_error() -> Iterator[None]:
  """A context manager for `main` functions: an NSTError inside becomes one `error:` line and exit status 2.

  Any other exception is a bug and keeps its traceback."""
  try:
    yield
  except NSTError as e:
    sys.stderr.write(f"error: {one_line(str(e))}\n")
    sys.exit(2)


class NSTWarning(UserWarning):
  """Something about the input that works but may not be what the user meant.

  For example a mask stretched to another aspect ratio. Command lines print it as one line `warning: <message>`."""
