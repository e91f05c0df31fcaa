"""Orbax checkpoints that survive being killed and resume by re-running.

Orbax writes each checkpoint to a temporary folder and renames it when complete,
so a process killed at any moment (SIGKILL included) leaves the earlier
checkpoints intact; a half-written one is ignored and cleaned up next time.
"""

import contextlib
import os
import re
import time

from absl import logging
import jax

from mnist_jax import workdir as workdir_lib
from mnist_jax.errors import UserError, first_line


def _ocp():
  """orbax.checkpoint, imported where first needed: its 0.27 s of imports need not
  delay a new run's first step and evaluation (measured on a 2-core Xeon)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  return ocp


def _another_process_failed(e: Exception) -> bool:
  """Whether a failed write failed at a barrier where a run's processes wait for
  each other, one of them dead: not this disk's fault, and main.py says what it is."""
  return jax.process_count() > 1 and (isinstance(e, jax.errors.JaxRuntimeError)
                                      or re.search(r'Barrier|heartbeat', str(e)) is not None)


class Manager:
  """Saves a TrainState every time it is asked, keeps the last N.

  A checkpoint that cannot be read back (a truncated, missing or overwritten
  file, lost metadata) is moved to `<workdir>/checkpoints_damaged/` with a
  warning, never deleted, and the one before it is used.
  """

  def __init__(self, directory: str, keep: int):
    self.directory = os.path.abspath(directory)
    self._keep = keep
    self._opened = None

  @property
  def _manager(self):
    """The orbax CheckpointManager, opened at first use."""
    if self._opened is None:
      ocp = _ocp()
      self._opened = ocp.CheckpointManager(
          self.directory, item_handlers=ocp.StandardCheckpointHandler(),
          options=ocp.CheckpointManagerOptions(max_to_keep=self._keep))
    return self._opened

  def latest_step(self):
    return self._manager.latest_step()

  def all_steps(self):
    return list(self._manager.all_steps())

  def save(self, step: int, state) -> None:
    """Starts an asynchronous save; `close()` waits for it. A save that failed
    (a full disk, a folder gone) is reported here, at the next save, or at close."""
    with self._writing():  # Orbax waits here while the save before is still being written.
      self._manager.save(step, args=_ocp().args.StandardSave(state))

  @contextlib.contextmanager
  def _writing(self):
    """Says so if a write is slow, and turns its failure into one UserError
    (_write_error), unless another process of the run failed (_another_process_failed)."""
    try:
      with workdir_lib.said_if_slow(self.directory):
        yield
    except Exception as e:  # pylint: disable=broad-except
      if _another_process_failed(e):
        raise
      raise self._write_error(e) from e

  def _write_error(self, e: Exception) -> UserError:
    """One message for a failed write. Orbax reports a full disk as a ValueError
    from TensorStore ('RESOURCE_EXHAUSTED ... No space left on device'), not an OSError."""
    reason = e.strerror if isinstance(e, OSError) and e.strerror else first_line(e)
    system = re.search(r'([A-Z][^:\[]*?) \[os_error_code', str(e))  # TensorStore's errno text.
    if system:
      reason = system.group(1)
    return UserError(f'Cannot write checkpoints in {self.directory}: {reason}. The '
                     'checkpoints written before are kept; free some space (or fix the '
                     'folder), then run the same command again to resume.')

  def restore(self, state, step=None, required: bool = False):
    """Restores `step` (default: the latest readable one) onto `state`'s structure
    and shardings.

    Returns `state` unchanged when there is no usable checkpoint, unless
    `required`. A shape or structure mismatch, e.g. a checkpoint of another
    model, is a UserError; a damaged checkpoint is set aside (see the class).
    """
    if step is None and not required and not (os.path.isdir(self.directory)
                                              and os.listdir(self.directory)):
      return state  # A new run: nothing to read.
    if step is not None and step not in self.all_steps():
      raise UserError(f'No checkpoint for step {step} in {self.directory}; '
                      f'available: {self.all_steps()}.')
    candidates = [step] if step is not None else sorted(self.all_steps(), reverse=True)
    for i, candidate in enumerate(candidates):
      try:
        return self._restore(state, candidate)
      except _Damaged as e:
        moved = self._set_aside(candidate)
        later = candidates[i + 1:]
        logging.warning('The checkpoint at step %d is damaged (%s); moved it to %s. %s',
                        candidate, e, moved,
                        f'Using the one at step {later[0]}.' if later else
                        'No other checkpoint is left.')
    if required or step is not None:
      raise UserError(f'No usable checkpoint in {self.directory}'
                      + (f' (damaged ones were moved to {self._damaged_dir()})'
                         if candidates else '') + '.')
    return state

  def _restore(self, state, step):
    try:
      metadata = self._manager.item_metadata(step)
    except Exception as e:  # pylint: disable=broad-except
      raise _Damaged(f'unreadable metadata: {first_line(e)}') from e
    if not jax.tree.leaves(metadata):  # None too.
      raise _Damaged('its metadata is missing')
    # Compare shapes first: a failed restore leaves orbax's threads in a mess.
    saved = sorted(tuple(a.shape) for a in jax.tree.leaves(metadata))
    wanted = sorted(tuple(a.shape) for a in jax.tree.leaves(state))
    if saved != wanted:
      diff = next(((a, b) for a, b in zip(saved, wanted) if a != b), None)
      detail = (f'e.g. an array of shape {diff[0]} where the configured model has {diff[1]}'
                if diff else f'{len(saved)} arrays where the configured model has {len(wanted)}')
      raise UserError(
          f'The checkpoint at step {step} in {self.directory} does not fit the configured '
          f'model ({detail}): another model, size or optimizer was trained there. Use a new '
          f'--workdir, or the config that workdir was trained with (its config.json).')
    abstract = jax.tree.map(_ocp().utils.to_shape_dtype_struct, state)
    try:
      return self._manager.restore(step, args=_ocp().args.StandardRestore(abstract))
    except ValueError as e:  # Same shapes, other structure: e.g. an older TrainState.
      raise UserError(
          f'The checkpoint at step {step} in {self.directory} does not fit the configured '
          f'training state ({str(e).splitlines()[0].rstrip(":")}): it was written by another '
          'version of mnist_jax or another config. Use a new --workdir, or retrain.') from e
    except Exception as e:  # pylint: disable=broad-except
      raise _Damaged(first_line(e)) from e  # TensorStore: a truncated or missing file.

  def _damaged_dir(self):
    return os.path.join(os.path.dirname(self.directory), 'checkpoints_damaged')

  def _set_aside(self, step) -> str:
    """Moves a damaged checkpoint out of orbax's sight; returns where to."""
    self._manager.close()
    self._opened = None  # Opened again, without the damaged checkpoint, at the next use.
    target = os.path.join(self._damaged_dir(), f'{step}_{time.strftime("%Y%m%d-%H%M%S")}')
    try:
      os.makedirs(self._damaged_dir(), exist_ok=True)
      os.rename(os.path.join(self.directory, str(step)), target)
    except FileNotFoundError:
      pass  # Another process of this run moved it first.
    except OSError as e:
      raise UserError(f'The checkpoint at step {step} in {self.directory} is damaged and '
                      f'could not be moved aside ({e.strerror}): move or delete it, then run '
                      'again.') from e
    return target

  def close(self) -> None:
    """Waits for pending saves, then releases the manager."""
    if self._opened is None:
      return
    try:
      with self._writing():
        self._manager.wait_until_finished()
    finally:
      try:
        self._manager.close()
      except Exception:  # pylint: disable=broad-except
        pass  # The save's own error, raised once above.

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


class _Damaged(Exception):
  """A checkpoint whose files cannot be read back."""
