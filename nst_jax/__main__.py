"""`python -m nst_jax COMMAND --flags`; see nst_jax/cli.py."""

from nst_jax.cli import run

if __name__ == "__main__":
  run()
