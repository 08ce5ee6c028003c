"""The command lines: `python -m nst_jax COMMAND` (main.py) and what every command shares (command.py)."""
