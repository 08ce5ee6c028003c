"""The command line's names for the config fields that library errors name.

Each `StylizeConfig.<field>` in an error's message becomes the flag that sets it.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable

from nst_jax.errors import NSTError
from nst_jax.objective.config import StylizeConfig

# The flag of each config field that library errors name (`StylizeConfig.style_weight`): every field's flag has
# the field's name.
FIELD_FLAGS = {f"StylizeConfig.{field.name}": f"--{field.name}" for field in dataclasses.fields(StylizeConfig)}


def flag_message(message: str) -> str:
  """`message` with every config field it names (FIELD_FLAGS) replaced by that field's flag."""
  return re.sub(r"StylizeConfig\.\w+", lambda m: FIELD_FLAGS.get(m.group(0), m.group(0)), message)


def fields_as_flags(run: Callable) -> Callable:
  """`run` (a command's) wrapped so that the config fields its errors name read as the flags that set them."""
  @functools.wraps(run)
  def wrapped(*args, **kwargs):
    try:
      return run(*args, **kwargs)
    except NSTError as e:
      if "StylizeConfig." not in str(e):
        raise
      raise NSTError(flag_message(str(e))) from None
  return wrapped
