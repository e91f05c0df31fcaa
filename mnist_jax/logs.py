"""Progress lines that stand out: the libraries' INFO chatter is dropped."""

import logging as std_logging
import sys

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


def _late_tensorstore_callback(unraisable) -> bool:
  """True for TensorStore telling an event loop that Orbax already closed.

  When one write of a save fails (a full disk), Orbax's save coroutine raises and
  its loop closes while TensorStore's other writes are still finishing; each one's
  done callback then calls `loop.call_soon_threadsafe` on the closed loop and
  TensorStore prints that as unraisable, a dozen tracebacks after the one error
  that reaches the caller.
  """
  tb = unraisable.exc_traceback
  while tb is not None and tb.tb_next is not None:
    tb = tb.tb_next
  return (isinstance(unraisable.exc_value, RuntimeError)
          and str(unraisable.exc_value) == 'Event loop is closed'
          and tb is not None and tb.tb_frame.f_code.co_name == '_check_closed')


class _UnraisableHook:
  """Drops only `_late_tensorstore_callback`; hands everything else on."""

  def __init__(self, previous):
    self.previous = previous

  def __call__(self, unraisable) -> None:
    if not _late_tensorstore_callback(unraisable):
      self.previous(unraisable)


def quiet_libraries() -> None:
  """For main.py and notebooks; calling it again changes nothing."""
  logger = logging.get_absl_logger()
  if not any(isinstance(f, _QuietLibraries) for f in logger.filters):
    logger.addFilter(_QuietLibraries())
  std_logging.getLogger('jax._src.xla_bridge').setLevel(std_logging.WARNING)
  if not isinstance(sys.unraisablehook, _UnraisableHook):
    sys.unraisablehook = _UnraisableHook(sys.unraisablehook)
