"""Fixtures shared by several test modules."""

import os

import pytest

from nst_jax import demo
from nst_jax.io import image_io
from nst_jax.errors import NSTError
from nst_jax.weights.store import resolve_weights


@pytest.fixture(scope="session")
def default_weights():
  """The real offline default (`hed-vgg16`). CI fetches it first, so there a missing file is a failure; on a
  developer machine without it the tests that need it are skipped."""
  try:
    return resolve_weights("hed-vgg16")
  except NSTError as e:
    if os.environ.get("CI"):
      raise
    pytest.skip(f"default weights not fetched: {e}")


@pytest.fixture(scope="session")
def content():
  """The demo content photo (matplotlib's sample) at 64 px on its long side."""
  return image_io.resize_long_side(demo.default_content(), 64)
