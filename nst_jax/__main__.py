"""`python -m nst_jax COMMAND --flags`; see nst_jax/cli/."""

import os
import sys

if __name__ == "__main__":
  try:
    from nst_jax.cli.main import run
  except KeyboardInterrupt:  # Ctrl-C while the package is imported
    sys.stderr.write("error: interrupted while starting; nothing was written\n")
    sys.stderr.flush()
    os._exit(130)  # pylint: disable=protected-access
  run()
