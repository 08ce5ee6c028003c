"""The one exception type that command-line entry points turn into a one-line message."""


class NSTError(Exception):
  """A problem with the user's input or environment, explained in one line.

  Command-line entry points print `error: <message>` and exit with status 2 instead of a traceback. Library
  callers can catch it like any other exception.
  """
