"""The command line's names for the config fields and inputs that library errors name: each `StylizeConfig.<field>`,
`HighresConfig.<field>`, `PhotorealConfig.<field>` or `RunSettings.<field>` in an error's message becomes the flag
that sets it, and so does each image input that library messages name in backquotes (`` `style_masks` ``)."""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable

from nst_jax.errors import NSTError
from nst_jax.highres.highres_config import HighresConfig
from nst_jax.methods.photoreal.objective import PhotorealConfig
from nst_jax.objective.config import StylizeConfig
from nst_jax.optim import RunSettings

CONFIGS = (StylizeConfig, HighresConfig, PhotorealConfig, RunSettings)
# Fields whose flag has another name; every other field's flag has the field's name.
RENAMED = {"optimizer_options": "--optimizer_args"}
FIELD_FLAGS = {f"{config.__name__}.{field.name}": RENAMED.get(field.name, f"--{field.name}")
               for config in CONFIGS for field in dataclasses.fields(config)}
# Image inputs of the library's functions (arguments, not config fields) whose flag has the argument's name.
INPUTS = ("style_masks", "depth", "content_seg", "style_seg", "preserve_colors")
FIELD_FLAGS.update({f"`{name}`": f"--{name}" for name in INPUTS})
FIELD = re.compile(r"\b(?:%s)\.\w+|`(?:%s)`" % ("|".join(config.__name__ for config in CONFIGS), "|".join(INPUTS)))


def flag_message(message: str) -> str:
  """`message` with every config field it names (FIELD_FLAGS) replaced by that field's flag."""
  return FIELD.sub(lambda m: FIELD_FLAGS.get(m.group(0), m.group(0)), message)


def fields_as_flags(run: Callable) -> Callable:
  """`run` (a command's), with the config fields that its errors name given as the flags that set them."""
  @functools.wraps(run)
  def wrapped(*args, **kwargs):
    try:
      return run(*args, **kwargs)
    except NSTError as e:
      if not FIELD.search(str(e)):
        raise
      raise NSTError(flag_message(str(e))) from None
  return wrapped
