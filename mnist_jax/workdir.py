"""The run's folder: checked before any work, one run at a time, files replaced whole.

A run writes `config.json`, `metrics.jsonl`, TensorBoard events and
`checkpoints/` here. Every failure to write is one message naming the file,
never a traceback or a hang, and what was written before stays usable.
"""

import contextlib
import fcntl
import json
import os
import sys

from absl import logging

from mnist_jax.errors import UserError

LOCK_FILE = '.lock'


class Busy(UserError):
  """Another process is training in this workdir."""


def make_writable_folder(folder: str, tag: str = '') -> None:
  """Creates `folder` and writes and removes a file there; raises OSError where it
  cannot (root passes permission checks, so only a real write tells)."""
  os.makedirs(folder, exist_ok=True)
  probe = os.path.join(folder, f'.write_test.{tag or os.getpid()}')
  with open(probe, 'w') as f:
    f.write('ok')
  os.remove(probe)


def prepare(workdir: str, process_index: int = 0) -> None:
  """Creates `workdir` and `workdir/checkpoints`, and checks both take files."""
  for folder in (workdir, os.path.join(workdir, 'checkpoints')):
    try:
      make_writable_folder(folder, str(process_index))
    except OSError as e:
      raise UserError(f'Cannot write to {folder}: {e.strerror or e}. Choose a --workdir '
                      'you can write to.') from e


@contextlib.contextmanager
def lock(workdir: str):
  """Holds an exclusive OS lock on `workdir` for the life of one training run.

  The OS drops it when the process ends, however it ends, so a crashed run
  leaves no stale lock. Only process 0 of a multi-process run takes it: the
  processes of one run share their workdir.
  """
  path = os.path.join(workdir, LOCK_FILE)
  try:
    f = open(path, 'a+')
  except OSError as e:
    raise UserError(f'Cannot write {path}: {e.strerror or e}.') from e
  with f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      owner = f.read().strip() or 'another process'
      raise Busy(f'Another run is training in {workdir} ({owner}). Wait for it to '
                      'finish or stop it, or choose another --workdir.') from None
    f.seek(0)
    f.truncate()
    f.write(f'pid {os.getpid()} on {os.uname().nodename}\n')
    f.flush()
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def write_atomically(path: str, text: str) -> None:
  """Replaces `path` whole (a temporary file, then a rename): a kill at any
  moment leaves the old file or the new one, never a half-written one."""
  try:
    with open(path + '.tmp', 'w') as f:
      f.write(text)
    os.replace(path + '.tmp', path)
  except OSError as e:
    raise UserError(f'Cannot write {path}: {e.strerror or e}.') from e


def append_line(path: str, text: str) -> None:
  try:
    with open(path, 'a') as f:
      f.write(text + '\n')
  except OSError as e:
    raise UserError(f'Cannot write {path}: {e.strerror or e}. The checkpoints written '
                    'so far are kept.') from e


def read_metrics(path: str) -> list[dict]:
  """The lines of a metrics.jsonl that hold a record; a torn last line (a kill
  mid-write) is skipped, and any other line that is not one (a damaged byte, an
  edit) is skipped with a warning naming it."""
  if not os.path.exists(path):
    return []
  try:
    with open(path, encoding='utf-8', errors='replace') as f:
      lines = f.readlines()
  except OSError as e:
    raise UserError(f'Cannot read {path}: {e.strerror or e}.') from e
  out, damaged = [], []
  for number, line in enumerate(lines, 1):
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      record = None
    if isinstance(record, dict):
      out.append(record)
    elif line.endswith('\n'):  # A whole line; a torn last one (a kill mid-write) has none.
      damaged.append(number)
  if damaged:
    logging.warning('%s: line(s) %s are not metric records (damaged?); skipped them.', path,
                    ', '.join(map(str, damaged)))
  return out


def truncate_metrics(path: str, last_step: int) -> list[dict]:
  """Drops metric lines written after the checkpoint a run resumes from, atomically;
  returns the lines kept."""
  kept = [m for m in read_metrics(path) if m.get('step', 0) <= last_step]
  if os.path.exists(path):
    write_atomically(path, ''.join(json.dumps(m) + '\n' for m in kept))
  return kept


def _summary_writer():
  """tensorboardX's SummaryWriter, imported without PyTorch.

  tensorboardX imports torch wherever it is installed (Colab, most GPU machines),
  only to accept torch tensors, which nothing here writes: on an H200 machine that
  took 3-4 s of every run's start-up. An entry of None in sys.modules makes
  that import fail as if torch were absent; it is removed again straight after.
  """
  if 'torch' in sys.modules:  # Already paid for.
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    return SummaryWriter
  sys.modules['torch'] = None
  try:
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  finally:
    del sys.modules['torch']
  return SummaryWriter


class Writer:
  """Where every number a run reports goes: the log, and on process 0 TensorBoard
  and, for evaluations, a line of metrics.jsonl. Closed on every way out of the run."""

  def __init__(self, workdir: str, primary: bool):
    self.metrics_path = os.path.join(workdir, 'metrics.jsonl')
    self._tensorboard_dir = os.path.join(workdir, 'tensorboard')
    self._summaries = None
    if primary:
      SummaryWriter = _summary_writer()  # pylint: disable=invalid-name
      try:
        self._summaries = SummaryWriter(self._tensorboard_dir)
      except OSError as e:
        raise self._error(e) from e

  def write(self, step: int, scalars: dict, message: str, record: bool = False) -> None:
    """Logs `message`; on process 0 writes `scalars` to TensorBoard at `step`
    and, if `record`, as a line of metrics.jsonl."""
    logging.info(message)
    if self._summaries is None:
      return
    if record:
      append_line(self.metrics_path, json.dumps(scalars))
    try:
      for key, value in scalars.items():
        self._summaries.add_scalar(key, value, step)
      self._summaries.flush()
    except OSError as e:
      raise self._error(e) from e

  def _error(self, e: OSError) -> UserError:
    return UserError(f'Cannot write TensorBoard summaries to {self._tensorboard_dir}: '
                     f'{e.strerror or e}.')

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    if self._summaries is not None:
      self._summaries.close()
