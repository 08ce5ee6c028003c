"""`python -m nst_jax COMMAND --flags`; see nst_jax/cli/."""

import os
import signal
import sys


def _interrupted_while_starting(signum, frame) -> None:
  """Ctrl-C before the command line is read: nothing was written, so leave at once (an exception raised inside an
  import could be swallowed by a broad `except` there)."""
  del signum, frame
  sys.stderr.write("error: interrupted while starting; nothing was written\n")
  sys.stderr.flush()
  os._exit(130)  # pylint: disable=protected-access


if __name__ == "__main__":
  signal.signal(signal.SIGINT, _interrupted_while_starting)
  from nst_jax.cli.main import run  # pylint: disable=wrong-import-position  # after the handler
  run()
