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
        self.directory, item_handlers=ocp.StandardCheckpointHandler(),
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
    # Compare shapes first: a failed restore leaves orbax's threads in a mess.
    saved = sorted(tuple(a.shape) for a in jax.tree.leaves(self._manager.item_metadata(step)))
    wanted = sorted(tuple(a.shape) for a in jax.tree.leaves(state))
    if saved != wanted:
      diff = next(((a, b) for a, b in zip(saved, wanted) if a != b), None)
      detail = (f'e.g. an array of shape {diff[0]} where the configured model has {diff[1]}'
                if diff else f'{len(saved)} arrays where the configured model has {len(wanted)}')
      raise UserError(
          f'The checkpoint at step {step} in {self.directory} does not fit the configured '
          f'model ({detail}): another model, size or optimizer was trained there. Use a new '
          f'--workdir, or the config that workdir was trained with (its config.json).')
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    try:
      return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except ValueError as e:  # Same shapes, other structure: e.g. an older TrainState.
      raise UserError(
          f'The checkpoint at step {step} in {self.directory} does not fit the configured '
          f'training state ({str(e).splitlines()[0].rstrip(":")}): it was written by another '
          'version of mnist_jax or another config. Use a new --workdir, or retrain.') from e

  def close(self) -> None:
    """Waits for pending saves, then releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
