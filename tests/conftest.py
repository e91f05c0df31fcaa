"""Shared fixtures: tiny synthetic data for unit tests, the real MNIST for integration."""

import collections
import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import jax
import numpy as np
import pytest

from configs import tiny  # Installed by requirements.txt (`-e .`).
from mnist_jax import input_pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The four official MNIST .gz files: MNIST_JAX_MANUAL_DIR, else the folder beside the
# checkout that CI has. Without them the tests on real data skip, and the summary says
# so; MNIST_JAX_REQUIRE_DATA=1 (CI) makes that a failure instead.
MNIST_DIR = os.environ.get('MNIST_JAX_MANUAL_DIR') or os.path.join(
    os.path.dirname(ROOT), 'shared', 'datasets', 'mnist')
NO_DATA = f'real MNIST not found in {MNIST_DIR} (set MNIST_JAX_MANUAL_DIR to the .gz files)'
# A folder kept between pytest runs for the prepared MNIST and digit_model, which take
# ~40 s to make: the mutation runs (tests/mutation/run.sh) start pytest once per mutant.
# Unset (CI, a plain pytest), both are made afresh in the run's temporary folder. Each
# of pytest-xdist's workers (pytest.ini) has its own: two would write the same files.
CACHE = os.environ.get('MNIST_JAX_TEST_CACHE') and os.path.join(
    os.environ['MNIST_JAX_TEST_CACHE'], os.environ.get('PYTEST_XDIST_WORKER', 'main'))


def synthetic_split(n, seed=0):
  """Learnable fake digits: class c lights up a c-dependent block of pixels."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 10, n).astype(np.int32)
  images = rng.integers(0, 40, (n, 28, 28, 1)).astype(np.uint8)
  for i, c in enumerate(labels):
    r, col = divmod(int(c), 4)
    images[i, 2 + 8 * r: 8 + 8 * r, 2 + 6 * col: 7 + 6 * col] = 255
  return input_pipeline.Split(images, labels)


def turned(orientation: int) -> bytes:
  """EXIF whose Orientation tag tells a viewer how to turn the picture stored (6: a
  quarter clockwise, as phones store upright photos), for `Image.save(exif=...)`."""
  from PIL import ExifTags, Image  # pylint: disable=g-import-not-at-top
  exif = Image.Exif()
  exif[ExifTags.Base.Orientation] = orientation
  return exif.tobytes()


def tiny_command(workdir, mnist_dirs, *flags, config='tiny'):
  """`python main.py` training the tiny config (or `config`) on the real MNIST, plus `flags`."""
  return [sys.executable, os.path.join(ROOT, 'main.py'), f'--workdir={workdir}',
          '--config=' + os.path.join(ROOT, 'configs', f'{config}.py'),
          f'--config.manual_dir={mnist_dirs[0]}', f'--config.data_dir={mnist_dirs[1]}', *flags]


@pytest.fixture(scope='session', autouse=True)
def compilation_cache(tmp_path_factory):
  """One XLA compilation cache for the session's tests and the processes they start:
  each run jits its steps afresh, and most runs compile the same few small programs,
  which a cache hit gives back unchanged. In CACHE it is kept between pytest runs."""
  path = os.path.join(CACHE, 'xla') if CACHE else str(tmp_path_factory.mktemp('xla'))
  settings = {'jax_compilation_cache_dir': path, 'jax_persistent_cache_min_compile_time_secs': 0}
  with pytest.MonkeyPatch.context() as patch:
    for name, value in settings.items():
      jax.config.update(name, value)
      patch.setenv(name.upper(), str(value))
    yield path


@pytest.fixture
def synthetic_data():
  return {'train': synthetic_split(512, seed=0), 'test': synthetic_split(203, seed=1)}


@pytest.fixture
def tiny_config():
  config = tiny.get_config()
  config.batch_size = 32
  config.train_steps_per_epoch = 8
  config.eval_batch_size = 50
  return config


@pytest.fixture(scope='session')
def mnist_dirs(tmp_path_factory):
  """(manual_dir, data_dir) for the real MNIST, prepared once per session."""
  if not os.path.isdir(MNIST_DIR):
    if os.environ.get('MNIST_JAX_REQUIRE_DATA') == '1':
      pytest.fail(f'MNIST_JAX_REQUIRE_DATA=1 but the {NO_DATA}.')
    pytest.skip(NO_DATA)
  data_dir = os.path.join(CACHE, 'tfds') if CACHE else str(tmp_path_factory.mktemp('tfds'))
  input_pipeline.load('mnist', data_dir, MNIST_DIR, splits=())
  return MNIST_DIR, data_dir


@pytest.fixture(scope='session')
def mnist(mnist_dirs):
  return input_pipeline.load('mnist', mnist_dirs[1], mnist_dirs[0])


@pytest.fixture(scope='session')
def digit_model(mnist_dirs, tmp_path_factory):
  """A small CNN trained for 400 steps on the real MNIST (~97% test accuracy):
  a model whose answers on clear digits can be checked."""
  from mnist_jax import train  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  config.manual_dir, config.data_dir = mnist_dirs
  config.num_epochs, config.train_steps_per_epoch = 1, 400
  if CACHE:  # A run found finished there returns at once.
    workdir = os.path.join(CACHE, 'digit_model')
  else:
    workdir = str(tmp_path_factory.mktemp('digit_model'))
  train.train_and_evaluate(config, workdir)
  return workdir


# --mode=serve as a user starts it.
def free_port():
  with socket.socket() as sock:
    sock.bind(('127.0.0.1', 0))
    return sock.getsockname()[1]


def start_server(workdir, port, *flags):
  return subprocess.Popen([sys.executable, os.path.join(ROOT, 'main.py'), '--mode=serve',
                           f'--workdir={workdir}', f'--port={port}', *flags],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)


def wait_until_up(proc, port, timeout=120):
  deadline = time.time() + timeout
  while time.time() < deadline:
    assert proc.poll() is None, proc.stdout.read()
    try:
      with urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2) as r:
        return r.read()
    except OSError:
      time.sleep(0.3)
  raise AssertionError('the server did not come up')


@contextlib.contextmanager
def serving(workdir):
  """main.py --mode=serve on `workdir`'s model, on a free port, up: (process, port)."""
  port = free_port()
  proc = start_server(workdir, port)
  try:
    wait_until_up(proc, port)
    yield proc, port
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()


def pytest_terminal_summary(terminalreporter):
  """One line per reason that tests were skipped, so a clone without the data or the
  browser knows what it did not test."""
  reasons = collections.Counter(
      str(r.longrepr[2] if isinstance(r.longrepr, tuple) else r.longrepr).removeprefix(
          'Skipped: ') for r in terminalreporter.stats.get('skipped', []))
  for reason, count in sorted(reasons.items()):
    terminalreporter.write_line(f'mnist_jax: {count} test(s) skipped: {reason}', yellow=True)


# A real PostgreSQL server, Debian's, for the sweep's shared database.
class Postgres:
  """A PostgreSQL cluster of its own in `root`, on a free port; stop() and start()
  it to make an outage. Run as the `postgres` user where the tests run as root
  (initdb refuses root). `url` has the password; the server checks it."""

  PASSWORD = 'sekret-4711'

  def __init__(self, root):
    bins = sorted(glob.glob('/usr/lib/postgresql/*/bin/initdb'))
    if not bins:
      raise FileNotFoundError('no PostgreSQL server (apt-get install postgresql)')
    self.bin = os.path.dirname(bins[-1])
    self.root, self.port = str(root), free_port()
    self.data = os.path.join(self.root, 'data')
    self.as_user = ['runuser', '-u', 'postgres', '--'] if os.geteuid() == 0 else []
    os.makedirs(self.root, exist_ok=True)
    if self.as_user:
      shutil.chown(self.root, 'postgres')
    with open(os.path.join(self.root, 'pw'), 'w') as f:
      f.write(self.PASSWORD)
    if self.as_user:
      shutil.chown(os.path.join(self.root, 'pw'), 'postgres')
    self._run('initdb', '-D', self.data, '-U', 'mnist', '--pwfile', os.path.join(self.root, 'pw'),
              '--auth-local=trust', '--auth-host=scram-sha-256', '--no-sync')
    self.url = f'postgresql://mnist:{self.PASSWORD}@127.0.0.1:{self.port}/postgres'
    self.start()

  def _run(self, tool, *args):
    subprocess.run([*self.as_user, os.path.join(self.bin, tool), *args], check=True,
                   capture_output=True, cwd=self.root)

  def start(self):
    self._run('pg_ctl', '-D', self.data, '-l', os.path.join(self.root, 'log'), '-w', '-o',
              f'-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off',
              'start')

  def stop(self):
    self._run('pg_ctl', '-D', self.data, '-m', 'immediate', '-w', 'stop')


@pytest.fixture
def postgres():
  """A fresh PostgreSQL server; skipped (failed under MNIST_JAX_REQUIRE_POSTGRES=1,
  as in CI) where Debian's postgresql is not installed. Its folder is outside
  pytest's, which only the tests' own user may enter."""
  root = tempfile.mkdtemp(prefix='mnist_jax_postgres_')
  os.chmod(root, 0o755)
  try:
    server = Postgres(os.path.join(root, 'cluster'))
  except (FileNotFoundError, subprocess.CalledProcessError) as e:
    detail = getattr(e, 'stderr', b'') or b''
    reason = f'no PostgreSQL server to test on ({e} {detail.decode()[-300:]})'
    if os.environ.get('MNIST_JAX_REQUIRE_POSTGRES') == '1':
      pytest.fail(f'MNIST_JAX_REQUIRE_POSTGRES=1 but {reason}')
    pytest.skip(reason)
  yield server
  try:
    server.stop()
  except subprocess.CalledProcessError:
    pass  # Already stopped.
  shutil.rmtree(root, ignore_errors=True)
