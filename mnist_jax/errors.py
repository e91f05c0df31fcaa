"""The one exception type that reaches the user as a message, not a traceback."""


class UserError(Exception):
  """A mistake the user can fix: bad config, missing data, unusable workdir.

  `main.py` prints the message and exits non-zero; everything else is a bug
  and keeps its traceback.
  """
