"""The run's folder: checked before any work, one run at a time, files replaced whole.

A run writes `config.json`, `metrics.jsonl`, TensorBoard events and
`checkpoints/` here. Every failure to write is one message naming the file,
never a traceback or a hang, and what was written before stays usable.
"""

import contextlib
import fcntl
import json
import os
import re
import sys
import threading
import time

from absl import logging

from mnist_jax.errors import UserError

LOCK_FILE = '.lock'


class Busy(UserError):
  """Another process is training in this workdir."""


def make_writable_folder(folder: str) -> None:
  """Creates `folder` and writes and removes a file there; raises OSError where it
  cannot (root passes permission checks, so only a real write tells). The file is
  named for this process and machine: processes that share the folder (a sweep's,
  or a run's hosts) would otherwise remove each other's."""
  os.makedirs(folder, exist_ok=True)
  probe = os.path.join(folder, f'.write_test.{os.uname().nodename}.{os.getpid()}')
  with open(probe, 'w') as f:
    f.write('ok')
  os.remove(probe)


def prepare(workdir: str) -> None:
  """Creates `workdir` and `workdir/checkpoints`, and checks both take files."""
  for folder in (workdir, os.path.join(workdir, 'checkpoints')):
    try:
      make_writable_folder(folder)
    except OSError as e:
      raise UserError(f'Cannot write to {folder}: {e.strerror or e}. Choose a --workdir '
                      'you can write to.') from e


HEARTBEAT_S = 10  # How often a run renews its lock file's time.
STALE_S = 120  # A lock file renewed more recently than this belongs to a live run.


def _other_run(owner: str, age_s: float) -> bool:
  """Whether the lock file's `owner` ('pid N on HOST') is a run still alive.

  Asked after the OS lock was granted, for file systems where that lock does not
  reach the other machines (sshfs, NFS mounted without a lock manager): there, a
  run on another machine holds no lock we can see, but renews the file's time.
  """
  match = re.fullmatch(r'pid (\d+) on (\S+)', owner)
  if not match or age_s > STALE_S:
    return False  # Cleared by a run that ended, or left by one that died.
  if match.group(2) != os.uname().nodename:
    return True
  try:
    os.kill(int(match.group(1)), 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass  # Alive, another user's.
  return True


def _renew(path: str, stop: threading.Event) -> None:
  while not stop.wait(HEARTBEAT_S):
    try:
      os.utime(path)
    except OSError:
      pass  # A failing disk is reported by the writes that need it.


def _take(f, workdir: str, path: str) -> None:
  """Takes the OS lock on the open lock file `f` and writes this run into it, or
  raises Busy."""
  try:
    f.seek(0)
    owner = f.read().strip()
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
      no_lock = None
    except BlockingIOError:
      raise Busy(f'Another run is training in {workdir} ({owner or "another process"}). Wait '
                 'for it to finish or stop it, or choose another --workdir.') from None
    except OSError as e:  # ENOLCK: NFS mounted without its lock manager.
      no_lock = e.strerror or str(e)
    age_s = time.time() - os.fstat(f.fileno()).st_mtime
    if _other_run(owner, age_s):
      raise Busy(f'Another run is training in {workdir} ({owner}; its lock file was renewed '
                 f'{age_s:.0f} s ago). Wait for it to finish or stop it, or choose another '
                 f'--workdir. If that run is gone, wait {STALE_S} s or delete {path}.')
    f.seek(0)
    f.truncate()
    f.write(f'pid {os.getpid()} on {os.uname().nodename}\n')
    f.flush()
  except OSError as e:
    raise UserError(f'Cannot write {path}: {e.strerror or e}.') from e
  if no_lock:
    logging.warning('This file system gives no lock (%s): the lock file alone tells a '
                    'second run that this one is training.', no_lock)


@contextlib.contextmanager
def lock(workdir: str):
  """Holds an exclusive lock on `workdir` for the life of one training run.

  The OS lock is dropped when the process ends, however it ends, so a crashed
  run leaves no stale lock. Where the file system keeps OS locks to each machine,
  the lock file's content ('pid N on HOST') and its time, renewed every
  HEARTBEAT_S seconds, stop a second machine; a run that ends clears it. Only
  process 0 of a multi-process run takes it: the processes of one run share
  their workdir.
  """
  path = os.path.join(workdir, LOCK_FILE)
  try:
    f = open(path, 'a+')
  except OSError as e:
    raise UserError(f'Cannot write {path}: {e.strerror or e}.') from e
  try:
    _take(f, workdir, path)
    stop = threading.Event()
    threading.Thread(target=_renew, args=(path, stop), daemon=True).start()
    try:
      yield
    finally:
      stop.set()
      with contextlib.suppress(OSError):
        f.truncate(0)  # Ended: a run on another machine need not wait STALE_S.
        f.flush()
        fcntl.flock(f, fcntl.LOCK_UN)
  finally:
    with contextlib.suppress(OSError):
      f.close()  # Fails where the disk has gone; the run's own error says so.


SLOW_WRITE_S = 3  # A wait on the disk longer than this is said.


@contextlib.contextmanager
def said_if_slow(path: str):
  """Says once, if the writing in this block waits on `path` over SLOW_WRITE_S (a
  slow or distant disk), what the run is waiting for; silent otherwise."""
  def say():
    logging.info('Waiting for %s to be written (a slow disk?).', path)
  notice = threading.Timer(SLOW_WRITE_S, say)
  notice.daemon = True
  notice.start()
  try:
    yield
  finally:
    notice.cancel()


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
    and, if `record` (an evaluation), as a line of metrics.jsonl.

    TensorBoard is flushed here, in this thread, every time, so that a write that
    fails fails here, as one message: left to tensorboardX's own thread, it would
    end that thread with a traceback and leave nothing to write the events after
    it. So a slow disk holds training up at a progress line (behind a checkpoint
    being written); `said_if_slow` says so.
    """
    logging.info(message)
    if self._summaries is None:
      return
    with said_if_slow(os.path.dirname(self.metrics_path)):
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

  def __exit__(self, exc_type, exc, tb):
    if self._summaries is None:
      return
    try:
      self._summaries.close()
    except OSError as e:
      if exc is None:
        raise self._error(e) from e
      # Else the run is stopping with its own error, the one to say.
