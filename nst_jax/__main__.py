"""`python -m nst_jax COMMAND --flags`; see nst_jax/cli/."""

from nst_jax.cli.main import run

if __name__ == "__main__":
  run()
