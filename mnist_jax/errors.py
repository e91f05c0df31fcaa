"""The one exception type that reaches the user as a message, not a traceback."""


class UserError(Exception):
  """A mistake the user can fix: bad config, missing data, unusable workdir.

  `main.py` prints the message and exits non-zero; everything else is a bug
  and keeps its traceback.
  """


def first_line(e: BaseException, limit: int = 300) -> str:
  """An exception's text cut to one line for a message (its type's name where it has
  no text), without TensorStore's pointer to its full details."""
  text = (str(e).splitlines() or [type(e).__name__])[0]
  return text.split(' See full TensorStore details')[0][:limit]
