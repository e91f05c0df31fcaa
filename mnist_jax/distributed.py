"""Several processes (hosts) training one model: jax.distributed and data shares.

Every process runs the same command. Each reads only its share of each split,
the shares are exchanged once (MNIST is 55 MB), and from then on every device
holds the whole training set, as in a single-process run: the batch order, and
so the result, does not depend on how many processes or devices there are.
Only process 0 writes metrics, config and logs; all of them write their part of
each Orbax checkpoint.
"""

import os
import socket
import time

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

from mnist_jax import input_pipeline
from mnist_jax.errors import UserError


def _several(variable: str) -> bool:
  return len([h for h in os.environ.get(variable, '').split(',') if h]) > 1


def detected() -> bool:
  """Whether the environment says this is one of several processes.

  A coordinator in JAX_COORDINATOR_ADDRESS, a SLURM or Open MPI job of more
  than one task, or a TPU pod slice that lists its workers. A TPU VM that
  only its metadata server describes needs --multihost.
  """
  return bool(
      os.environ.get('JAX_COORDINATOR_ADDRESS')
      or int(os.environ.get('SLURM_NTASKS', '1')) > 1 and 'SLURM_JOB_ID' in os.environ
      or int(os.environ.get('OMPI_COMM_WORLD_SIZE', '1')) > 1
      or _several('TPU_WORKER_HOSTNAMES') or _several('TPU_PROCESS_ADDRESSES')
      or os.environ.get('MEGASCALE_COORDINATOR_ADDRESS'))


def initialize(coordinator_address=None, num_processes=None, process_id=None,
               heartbeat_timeout_s: int = 100, timeout_s: int = 300) -> None:
  """jax.distributed.initialize, with what JAX cannot detect given explicitly.

  On TPU pods, SLURM and Open MPI JAX finds every argument itself; elsewhere
  all three must be given (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
  JAX_PROCESS_ID). A process that dies makes the others stop: at once when
  they next exchange gradients, at the latest after `heartbeat_timeout_s`.
  """
  env = os.environ.get
  try:
    coordinator_address = coordinator_address or env('JAX_COORDINATOR_ADDRESS')
    if num_processes is None and env('JAX_NUM_PROCESSES'):
      num_processes = int(env('JAX_NUM_PROCESSES'))
    if process_id is None and env('JAX_PROCESS_ID'):
      process_id = int(env('JAX_PROCESS_ID'))
    if coordinator_address and process_id:
      # JAX aborts the process if the coordinator never answers: find out first.
      _wait_for_coordinator(coordinator_address, timeout_s)
    logging.info('Waiting up to %d s for every process to join.', timeout_s)
    jax.distributed.initialize(coordinator_address, num_processes, process_id,
                               initialization_timeout=timeout_s,
                               heartbeat_timeout_seconds=heartbeat_timeout_s)
  except (RuntimeError, ValueError, TypeError) as e:
    raise UserError(
        f'Could not start the multi-process run: {str(e).rstrip(".")}. Outside TPU pods, '
        'SLURM and Open MPI, give every process the same --coordinator_address=HOST:PORT '
        '(process 0\'s address) and --num_processes, and its own --process_id (0 to N-1). '
        f'Every process must start within {timeout_s} s of the others.') from e
  if jax.process_count() > 1 and jax.default_backend() == 'cpu':
    # On CPU, JAX 0.12.1 deadlocks the first gradient exchange of a program that a
    # process loaded from the persistent compilation cache (0.12.0.1 did not); every
    # process compiling it afresh, it runs.
    jax.config.update('jax_enable_compilation_cache', False)
    logging.info('The compilation cache is off: processes on CPUs compile afresh.')


def _wait_for_coordinator(address: str, timeout_s: float) -> None:
  host, _, port = address.rpartition(':')
  if not host or not port.isdigit():
    raise UserError(f'--coordinator_address={address}: expected HOST:PORT.')
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      socket.create_connection((host.strip('[]'), int(port)), timeout=5).close()
      return
    except OSError as e:
      if time.monotonic() > deadline:
        raise UserError(
            f'Could not reach the coordinator at {address} within {timeout_s} s ({e}). '
            'Start process 0 (--process_id=0) on that host, and check the address and '
            'port: every process must be given the same one.') from e
      time.sleep(1)


def load_data(dataset: str, data_dir, manual_dir) -> dict[str, input_pipeline.Split]:
  """Both splits, whole and in order, on every process; each reads only its share."""
  count, index = jax.process_count(), jax.process_index()
  if count == 1:
    return input_pipeline.load(dataset, data_dir, manual_dir)
  if index == 0:  # Download or prepare once, before anyone reads (a shared data_dir).
    input_pipeline.load(dataset, data_dir, manual_dir, splits=(), share=(0, count))
  multihost_utils.sync_global_devices('mnist_jax: data prepared')
  local = input_pipeline.load(dataset, data_dir, manual_dir, share=(index, count))
  data = {split: _gather(arrays) for split, arrays in local.items()}
  if index == 0 and not input_pipeline.is_cached(dataset, data_dir):
    input_pipeline.save_cache(dataset, data_dir, data)
  return data


def _gather(local: input_pipeline.Split) -> input_pipeline.Split:
  """Every process's share, concatenated in process order."""
  sizes = multihost_utils.process_allgather(np.array([len(local)]))[:, 0]
  pad = int(sizes.max()) - len(local)

  def whole(x):
    x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
    shares = multihost_utils.process_allgather(x, tiled=False)  # [processes, max share, ...]
    return np.concatenate([rows[:n] for rows, n in zip(shares, sizes)])

  return input_pipeline.Split(whole(local.images), whole(local.labels))
