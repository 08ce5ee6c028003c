"""What every nst_jax command line shares.

Each command has its own `absl.flags.FlagValues`, made when the command runs (never at import), so a command
knows only its own flags: `--help` lists them, grouped, without absl's, and a flag of another command is refused.
Problems with the input end in one line `error: ...` on stderr and exit status 2, warnings about the input are
one line `warning: ...`, and nothing carries a logging prefix. Every command that computes with JAX also takes
`--compilation_cache` (default $NST_JAX_COMPILATION_CACHE, else a per-user folder; `nst_jax.io.compile_cache`), so
that a second run does no compilation.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import pathlib
import shutil
import sys
import textwrap
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from absl import flags

from nst_jax.cli import output_guard
from nst_jax.errors import NSTError, NSTWarning, one_line

RESUME_FLAGS = ("checkpoint_dir", "out_dir", "state_dir")  # folders of resume state, named when a command is interrupted
HELP_FLAGS = ("-h", "--help", "-help", "--helpfull", "--helpshort")
Sections = list[tuple[str, list[str]]]  # (title, flag names) in the order `--help` shows them


@dataclasses.dataclass(frozen=True)
class Command:
  """A command line: its name, usage, flags and the function that does its work.

  `define_flags(flag_values)` defines its flags on a fresh FlagValues and returns the help sections;
  `run(flag_values, positional)` does the work once they are parsed. `input_flags` name the flags whose files
  --output must not overwrite (`output_guard`)."""

  name: str          # as typed, e.g. "stylize" or "weights"
  prog: str          # e.g. "python -m nst_jax stylize"
  usage: str         # what follows `prog` in the usage line
  define_flags: Callable[[flags.FlagValues], Sections]
  run: Callable[[flags.FlagValues, list[str]], Any]
  positional: bool = False  # whether positional arguments are passed to `run` (else they are an error)
  description: str = ""
  compilation_cache: bool = True  # whether the command takes --compilation_cache (it compiles with JAX)
  # Flags that name files the command reads: --output may not resolve to any of them (`output_guard`).
  input_flags: tuple[str, ...] = ()
  folder_output: bool = False  # --output may be a folder (of video frames), checked by the command itself


def define_all_flags(command: Command, fv: flags.FlagValues) -> Sections:
  """The command's own flags and those every command shares (`--compilation_cache`) on `fv`; the help sections."""
  sections = list(command.define_flags(fv))
  if command.compilation_cache:
    flags.DEFINE_string("compilation_cache", None, "Folder of the persistent XLA compilation cache, so that a second "
                        "run does no compilation ('off' to disable; default $NST_JAX_COMPILATION_CACHE, else "
                        "~/.cache/nst_jax/xla).", flag_values=fv)
    sections.append(("runtime", ["compilation_cache"]))
  return sections


def flag_names(command: Command) -> set[str]:
  """The names of every flag `command` takes (defined on a throwaway FlagValues)."""
  fv = flags.FlagValues()
  define_all_flags(command, fv)
  return set(fv)


def format_help(command: Command, fv: flags.FlagValues, sections: Sections) -> str:
  """The command's `--help` text: usage, description, then each help section's flags with their defaults."""
  width = min(120, max(60, shutil.get_terminal_size((100, 24)).columns))
  lines = [f"usage: {command.prog} {command.usage}", ""]
  if command.description:
    lines += [textwrap.fill(command.description, width, break_on_hyphens=False), ""]
  for title, names in sections:
    lines.append(f"{title}:")
    for name in names:
      flag = fv[name]
      left = f"  --{name}"
      default = flag.default_as_str if flag.default is not None else ""
      text = flag.help + (f" [default: {default.strip(chr(39))}]" if default not in ("", "''") else "")
      # Never inside a word: a default such as hed-vgg16 stays whole.
      body = textwrap.wrap(text, width - 30, break_on_hyphens=False, break_long_words=False) or [""]
      if len(left) > 27:
        lines.append(left)
        lines += [" " * 30 + part for part in body]
      else:
        lines.append(left.ljust(30) + body[0])
        lines += [" " * 30 + part for part in body[1:]]
    lines.append("")
  return "\n".join(lines)


def _unknown_flag_message(command: Command, name: str, others: Callable[[], Sequence[Command]]) -> str:
  bare = name[2:] if name.startswith("no") else None  # --noFLAG negates a boolean flag
  owners = [c.name for c in others() if c.name != command.name and
            (name in flag_names(c) or (bare is not None and bare in flag_names(c)))]
  where = f" (a flag of {', '.join(owners)})" if owners else ""
  return f"{command.name} takes no --{name}{where}; `{command.prog} --help` lists its flags"


def parse(command: Command, args: Sequence[str], others: Callable[[], Sequence[Command]] = tuple
          ) -> tuple[flags.FlagValues, Sections, list[str]]:
  """(the parsed flags, the help sections, the positional arguments) of `args`; NSTError for anything wrong.

  `others()` gives the commands an unknown flag may belong to (called only then: loading them imports their
  modules)."""
  fv = flags.FlagValues()
  sections = define_all_flags(command, fv)
  try:
    positional = fv([command.prog, *args])[1:]
  except flags.UnrecognizedFlagError as e:
    raise NSTError(_unknown_flag_message(command, e.flagname, others)) from None
  except flags.Error as e:  # a bad value: absl's own message names the flag
    raise NSTError(one_line(str(e))) from None
  check_finite_floats(fv)
  if positional and not command.positional:
    raise NSTError(f"unexpected argument {' '.join(positional)}: expected one command and its flags; "
                   f"`{command.prog} --help` lists them")
  return fv, sections, positional


def check_finite_floats(fv: flags.FlagValues) -> None:
  """Raises NSTError when a float flag is NaN or infinite (absl parses 'nan' and 'inf' as numbers)."""
  for name in sorted(fv):
    flag = fv[name]
    if isinstance(flag.parser, flags.FloatParser) and flag.value is not None and not math.isfinite(flag.value):
      raise NSTError(f"--{name} must be a finite number, got {flag.value}")


def saved_images() -> tuple[int, pathlib.Path | None]:
  """`image_io.saved_images()`, or none when no command has imported image_io yet (then nothing was saved)."""
  image_io = sys.modules.get("nst_jax.io.image_io")
  return image_io.saved_images() if image_io is not None else (0, None)


def interrupted_message(fv: flags.FlagValues | None, saves_before: int) -> str:
  """What Ctrl-C leaves behind: the last image this command saved, and its resume state if it keeps one."""
  count, last = saved_images()
  parts = [f"interrupted; the last saved image is {last}" if count > saves_before and last else
           "interrupted; no image was saved"]
  for name in RESUME_FLAGS:
    folder = fv[name].value if fv is not None and name in fv else None
    if folder and pathlib.Path(folder).is_dir() and any(pathlib.Path(folder).iterdir()):
      parts.append(f"the checkpoints are in {folder} (rerun the same command to continue)")
  return "; ".join(parts)


_running: dict = {"fv": None, "saves": 0}  # the flags of the command `main` runs, for `current_interruption`


def current_interruption() -> str:
  """`interrupted_message` for the command running now (a signal handler's message)."""
  return interrupted_message(_running["fv"], _running["saves"])


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
  if issubclass(category, NSTWarning):
    sys.stderr.write(f"warning: {one_line(str(message))}\n")
  else:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def main(command: Command, args: Sequence[str], *, others: Callable[[], Sequence[Command]] = tuple) -> int:
  """Runs `command` on `args` (without the program name) and returns the exit status.

  0, 2 for a problem with the input (one `error:` line), 130 when interrupted. Any other exception is a bug and keeps
  its traceback."""
  # JAX logs backend probing at INFO and WARNING ("An NVIDIA GPU may be present ..."): not for the user. The level
  # is restored afterwards, so that a command run in-process (tests, notebooks) leaves JAX's logging as it found it.
  jax_logger = logging.getLogger("jax")
  level = jax_logger.level
  jax_logger.setLevel(logging.ERROR)
  try:
    return _main(command, args, others)
  finally:
    jax_logger.setLevel(level)


def _main(command: Command, args: Sequence[str], others: Callable[[], Sequence[Command]]) -> int:
  """`main` with JAX's logging quietened."""
  if any(arg in HELP_FLAGS for arg in args):
    fv = flags.FlagValues()
    sections = define_all_flags(command, fv)
    sys.stdout.write(format_help(command, fv, sections) + "\n")
    return 0
  fv, saves = None, saved_images()[0]
  _running.update(fv=None, saves=saves)
  with warnings.catch_warnings():
    warnings.simplefilter("always", NSTWarning)
    warnings.showwarning = _show_warning
    try:
      fv, _, positional = parse(command, args, others)
      _running["fv"] = fv
      output_guard.check_flags(fv.flag_values_dict(), command.input_flags, folder_ok=command.folder_output)
      if command.compilation_cache:
        from nst_jax.io import compile_cache  # pylint: disable=import-outside-toplevel  # JAX only once running
        compile_cache.enable(compile_cache.resolve(fv.compilation_cache))
      command.run(fv, positional)
    except NSTError as e:
      sys.stderr.write(f"error: {one_line(str(e))}\n")
      return 2
    except MemoryError:
      sys.stderr.write("error: out of memory; choose a smaller --size\n")
      return 2
    except KeyboardInterrupt:
      sys.stderr.write(f"error: {interrupted_message(fv, saves)}\n")
      return 130
  return 0
