"""Orbax checkpoints that survive being killed and resume by re-running.

Orbax writes each checkpoint to a temporary folder and renames it when complete,
so a process killed at any moment (SIGKILL included) leaves the earlier
checkpoints intact; a half-written one is ignored and cleaned up next time.
"""

import os

import jax
import orbax.checkpoint as ocp

from mnist_jax.errors import UserError


class Manager:
  """Saves a TrainState every time it is asked, keeps the last N."""

  def __init__(self, directory: str, keep: int):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def latest_step(self):
    return self._manager.latest_step()

  def all_steps(self):
    return list(self._manager.all_steps())

  def save(self, step: int, state) -> None:
    """Starts an asynchronous save; `close()` waits for it."""
    self._manager.save(step, args=ocp.args.StandardSave(state))

  def restore(self, state, step=None):
    """Restores `step` (default: the latest) onto `state`'s structure and shardings.

    Returns `state` unchanged when there is no checkpoint. Any shape or
    structure mismatch, e.g. a checkpoint of another model, is a UserError.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      return state
    if step not in self.all_steps():
      raise UserError(f'No checkpoint for step {step} in {self.directory}; '
                      f'available: {self.all_steps()}.')
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    try:
      return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except (ValueError, KeyError, TypeError) as e:
      raise UserError(
          f'The checkpoint at step {step} in {self.directory} does not fit the '
          f'configured model (a different model or size was trained there?). '
          f'Use a new --workdir, or the config that workdir was trained with '
          f'(see its config.json). Details: {str(e)[:300]}') from e

  def close(self) -> None:
    """Waits for pending saves, then releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()
