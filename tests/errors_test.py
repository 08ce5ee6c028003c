"""The command-line guard: an NSTError ends as one stderr line and exit status 2; anything else propagates."""

import pytest

from nst_jax.errors import NSTError, exit_on_error, one_line


def test_nst_error_becomes_one_line_and_status_2(capsys):
  with pytest.raises(SystemExit) as exit_info:
    with exit_on_error():
      raise NSTError("first line\nsecond line")
  assert exit_info.value.code == 2
  captured = capsys.readouterr()
  assert captured.out == "" and captured.err == "error: first line second line\n"


def test_other_exceptions_and_normal_exit_pass_through(capsys):
  with pytest.raises(ValueError, match="a bug"):
    with exit_on_error():
      raise ValueError("a bug")
  with exit_on_error():
    value = 1 + 1
  assert value == 2 and capsys.readouterr().err == ""
  assert one_line("a\r\nb\nc") == "a b c"
