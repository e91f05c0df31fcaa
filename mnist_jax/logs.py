"""Progress lines that stand out: the libraries' INFO chatter is dropped."""

import logging as std_logging

from absl import logging


class _QuietLibraries:
  """Passes warnings from everyone, INFO only from outside orbax, tfds and TF.

  Except tfds's warning that the folder it is about to prepare a dataset in has no
  dataset_info.json yet (it always says so on a first run), and orbax's tracebacks
  from its save threads (four for one full disk), whose error reaches the caller.
  """
  NOISY = ('orbax', 'tensorflow_datasets', 'tensorflow')

  def filter(self, record):
    if record.msg == 'Variant folder %s has no %s':
      return False
    if 'orbax' in record.pathname and record.levelno >= std_logging.ERROR and record.exc_info:
      return False  # A background save's failure: raised again to the caller, who says it once.
    return record.levelno >= std_logging.WARNING or not any(
        n in record.pathname for n in self.NOISY)


def quiet_libraries() -> None:
  """For main.py and notebooks; calling it again changes nothing."""
  logger = logging.get_absl_logger()
  if not any(isinstance(f, _QuietLibraries) for f in logger.filters):
    logger.addFilter(_QuietLibraries())
  std_logging.getLogger('jax._src.xla_bridge').setLevel(std_logging.WARNING)
