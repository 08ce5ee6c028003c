"""`python -m nst_jax COMMAND [flags]` (also `nst-jax`): dispatches to the command modules of this package."""

from __future__ import annotations

import importlib
import os
import signal
import sys
from collections.abc import Sequence

from nst_jax.cli import command
from nst_jax.io import atomic

PROG = "python -m nst_jax"
# name: (module, attribute, one line for `--help`). Modules are imported only to run a command (or to name the
# command a foreign flag belongs to), so that `--help` answers without importing JAX. A two-word name (`train
# adain`) is typed as two words.
COMMANDS = {
    "stylize": ("nst_jax.cli.stylize", "STYLIZE",
                "Gatys et al. style transfer by optimisation, with colour, stroke, region and structure controls"),
    "synthesize": ("nst_jax.cli.stylize", "SYNTHESIZE", "texture synthesis: the style statistics alone, from noise"),
    "photoreal": ("nst_jax.cli.photoreal", "COMMAND",
                  "photorealistic transfer (Luan et al. 2017): segmented style, matting Laplacian, smoothing"),
    "adain": ("nst_jax.cli.adain", "COMMAND", "AdaIN (Huang & Belongie 2017): any style in one forward pass"),
    "wct": ("nst_jax.cli.wct", "COMMAND", "universal style transfer (Li et al. 2017): whitening and colouring, "
            "coarse to fine"),
    "video": ("nst_jax.cli.video", "COMMAND", "a clip stylised frame by frame, stable in time (Gatys with a temporal "
              "loss, or WCT/AdaIN and a consistency pass)"),
    "train adain": ("nst_jax.cli.train_adain", "COMMAND", "train, fine-tune, resume or export the AdaIN decoder (or "
                    "its student encoder)"),
    "train wct": ("nst_jax.cli.train_wct", "COMMAND", "train, resume or export the WCT reconstruction decoders"),
    "train-wct": ("nst_jax.cli.train_wct", "DEPRECATED_NAME", "deprecated: the old name of `train wct`"),
    "weights": ("nst_jax.cli.weights", "COMMAND", "fetch, convert, list and describe weight sets"),
}
DEPRECATED = ("train-wct",)  # still run, but neither offered in errors nor named as the owner of a foreign flag
HELP = command.HELP_FLAGS + ("help",)


def load(name: str) -> command.Command:
  """The command called `name` (importing its module)."""
  module, attribute, _ = COMMANDS[name]
  return getattr(importlib.import_module(module), attribute)


def command_name(argv: Sequence[str]) -> str | None:
  """The command that argv (without the program name) starts with, in one word or two; None if none."""
  for words in (2, 1):
    name = " ".join(argv[:words])
    if len(argv) >= words and name in COMMANDS:
      return name
  return None


def format_commands() -> str:
  """The top-level `--help`: the usage line and one line per command."""
  width = max(len(name) for name in COMMANDS) + 4
  lines = [f"usage: {PROG} COMMAND [flags]", "", "commands:"]
  lines += [f"  {name.ljust(width)}{summary}" for name, (_, _, summary) in COMMANDS.items()]
  lines += ["", f"`{PROG} COMMAND --help` lists the flags of a command."]
  return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
  """Runs the command named by argv's first word or two (argv without the program name); returns the exit status."""
  name = command_name(argv)
  # `--help` alone, or after the first word of a two-word command (`train --help`), lists the commands.
  first_words = {name.split()[0] for name in COMMANDS if " " in name}
  leading = argv[:2] if argv[:1] and argv[0] in first_words else argv[:1]
  asks_help = bool(leading) and leading[-1] in HELP
  if name is None and not asks_help:
    got = " ".join(argv) or "(none)"
    current = ", ".join(other for other in COMMANDS if other not in DEPRECATED)
    sys.stderr.write(f"error: expected one command from {current}, got {got}; `{PROG} --help` lists them\n")
    return 2
  if name is None:
    sys.stdout.write(format_commands() + "\n")
    return 0
  try:
    chosen = load(name)
  except KeyboardInterrupt:  # while importing JAX
    sys.stderr.write("error: interrupted while starting; nothing was written\n")
    return 130
  # The other commands are loaded only to name the owner of a foreign flag: importing them all costs ~1 s.
  others = [other for other in COMMANDS if other != name and other not in DEPRECATED]
  return command.main(chosen, argv[len(name.split()):], others=lambda: [load(other) for other in others])


def leave(message: str) -> None:
  """Ends the process at once with `message` and status 130.

  XLA's compiler and runtime threads may still be busy: a normal interpreter exit tears the runtime down under them,
  which can end in a segmentation fault."""
  # A progress bar may be mid-line: start over at its beginning (and clear it on a terminal).
  sys.stderr.write(("\r\033[K" if sys.stderr.isatty() else "\r") + f"error: {message}\n")
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(130)  # pylint: disable=protected-access


def on_sigint(signum, frame) -> None:
  """The SIGINT handler of a console run: leave at once, except while a file is being written.

  A KeyboardInterrupt raised inside an import or library call can be swallowed by its broad `except`, and the run
  would go on; while a file is written, the KeyboardInterrupt lets the write remove its temporary file, and
  `command.main` reports."""
  del signum, frame
  if atomic.writing():
    raise KeyboardInterrupt
  leave(command.current_interruption())


def run() -> None:
  """Console-script entry point."""
  signal.signal(signal.SIGINT, on_sigint)
  try:
    code = main(sys.argv[1:])
  except KeyboardInterrupt:  # a second Ctrl-C while the first was being reported
    code = 130
  if code == 130:  # reported by command.main
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)  # pylint: disable=protected-access  # as in `leave`
  sys.exit(code)
