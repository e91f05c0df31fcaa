"""Entry point: python main.py --workdir=DIR [--config=configs/X.py] [--mode=...].

Everything lives in importable `mnist_jax` modules; this file only parses
flags, routes to a mode and turns user mistakes into one readable message.
"""

import gc
import importlib.util
import os
import signal
import sys
import time
import traceback

START_TIME = time.monotonic()  # `elapsed_s` in metrics counts from here (a clock set
# back or forward mid-run moves no duration: every one is taken on the monotonic clock).
INTERRUPTED = 130  # The exit status of a command stopped by Ctrl-C, as shells report it,
TERMINATED = 143  # and by SIGTERM.


def _interrupted_while_starting(signum, frame):
  del signum, frame
  print('\nInterrupted before any work started.', file=sys.stderr, flush=True)
  os._exit(INTERRUPTED)


# Ctrl-C during the imports: one line, not an import traceback (main() takes over).
signal.signal(signal.SIGINT, _interrupted_while_starting)
# Imports allocate objects that live to the end, and the cycle collector went over
# them again and again; off until they are in, then frozen out of its passes
# (main), which also makes tracing the jitted programs cheaper.
gc.disable()

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app, flags, logging
from ml_collections import config_flags

_HERE = os.path.dirname(os.path.abspath(__file__))
FLAGS = flags.FLAGS


def _exit_with(message: str):
  """Exits 1 with `message`, skipping the exit handlers.

  Every `with` block (checkpoint saves, TensorBoard) has closed by now; what the
  libraries' handlers would still do only repeats a failure already said, as
  tracebacks (tensorboardX closes its writer again on a disk that is gone), or
  aborts (jax.distributed's shutdown barrier, where another process is gone).
  """
  logging.flush()
  print(f'\nError: {message}', file=sys.stderr, flush=True)
  sys.stdout.flush()
  os._exit(1)


def _check_config_file(argv):
  """--config=FILE[:ARG] loads and gives a config, or one line says why not.

  config_flags would print the file's traceback (or 'Bad override' for a missing
  get_config); a config file is the user's to fix, like a sweep spec.
  """
  for arg in argv:
    if not arg.startswith('--config='):
      continue
    path, _, config_arg = arg.removeprefix('--config=').partition(':')
    if not os.path.isfile(path):
      _exit_with(f'--config={path}: no such file. The configs are in '
                 f'{os.path.join(_HERE, "configs")}.')
    try:
      module_spec = importlib.util.spec_from_file_location('config_check', path)
      module = importlib.util.module_from_spec(module_spec)
      module_spec.loader.exec_module(module)
      if not callable(getattr(module, 'get_config', None)):
        raise AttributeError('it defines no get_config()')
      config = module.get_config(*([config_arg] if config_arg else []))
      if config is None:
        raise TypeError('its get_config() returned None (no return statement?)')
    except Exception as e:  # pylint: disable=broad-except
      where = f' (line {e.lineno})' if isinstance(e, SyntaxError) and e.lineno else ''
      message = e.msg if isinstance(e, SyntaxError) else str(e)
      _exit_with(f'--config={path} could not be read: {type(e).__name__}{where}: {message}')


def _override_message(e: Exception) -> str:
  text = str(e).replace("\\'", "'").replace('\\n', ' ').strip("'")
  return f'Bad --config override: {text}'


flags.DEFINE_string('workdir', None, 'Folder for checkpoints, metrics and reports.')
flags.DEFINE_enum('mode', 'train', ['train', 'explore', 'eval', 'predict', 'serve', 'sweep'],
                  'train (default), explore the data, eval a trained workdir, '
                  'predict digits in --images, serve a draw-a-digit page and JSON API, '
                  'or sweep hyper-parameters (--sweep).')
flags.DEFINE_bool('resume_with_changes', False, 'train: resume a run with a config that '
                  'trains otherwise (e.g. more epochs); the changes are recorded in the '
                  'workdir\'s config_changes.jsonl. Without it such a resume is refused.')
flags.DEFINE_integer('checkpoint_step', None, 'eval/predict/serve: this step, not the latest.')
flags.DEFINE_list('ensemble', [], 'eval: more workdirs whose predictions are averaged '
                  'with --workdir\'s.')
flags.DEFINE_bool('tta', False, 'eval: average each prediction over the image shifted by '
                  'up to one pixel (test-time augmentation, 9 views).')
flags.DEFINE_multi_string('images', [], 'predict: image files or folders (repeatable; '
                          'several paths may follow one --images).')
flags.DEFINE_string('save_preprocessed', None,
                    'predict: folder for the 28x28 images the model saw.')
flags.DEFINE_string('host', '127.0.0.1', 'serve: the address to listen on (0.0.0.0: every '
                    'network of this machine).')
flags.DEFINE_integer('port', 8000, 'serve: the port to listen on.')
flags.DEFINE_string('sweep', None, 'sweep: the spec file (see sweeps/): values to try, '
                    'seeds, budget, metric. Running the same command again resumes it.')
flags.DEFINE_string('sweep_storage', None, 'sweep: an Optuna database URL (e.g. '
                    'postgresql://user:password@host/db) that several machines share; '
                    'default: SQLite in --workdir.')
flags.DEFINE_bool('multihost', None, 'train as one of several processes (jax.distributed). '
                  'Default: on where the environment says so (SLURM, Open MPI, TPU pod '
                  'workers, JAX_COORDINATOR_ADDRESS) or --coordinator_address is given.')
flags.DEFINE_string('coordinator_address', None, 'multihost: HOST:PORT of process 0, the same '
                    'for every process (not needed on TPU pods, SLURM, Open MPI).')
flags.DEFINE_integer('num_processes', None, 'multihost: how many processes in all.')
flags.DEFINE_integer('process_id', None, 'multihost: this process, 0 to num_processes-1.')
flags.DEFINE_integer('heartbeat_timeout_s', 100, 'multihost: a process silent this long '
                     'is taken for dead and the run stops.')
flags.mark_flags_as_required(['workdir'])
_check_config_file(sys.argv)
try:  # config_flags applies --config.KEY=VALUE overrides as soon as it is defined.
  config_flags.DEFINE_config_file('config', os.path.join(_HERE, 'configs', 'default.py'),
                                  'Training configuration file.', lock_config=True)
except (AttributeError, KeyError, TypeError, ValueError) as e:
  _exit_with(_override_message(e))


def parse_flags(argv):
  """absl's parsing, with one readable line instead of a traceback."""
  try:
    rest = FLAGS(argv)
  except flags.Error as e:
    _exit_with(f'{e}\nPass --helpshort to see the flags.')
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    _exit_with(_override_message(e))
  # A text field set to None on the command line arrives as the text 'None' (for the
  # folders: one named None): it means None.
  for arg in argv:
    key, _, value = arg.removeprefix('--config.').partition('=')
    if arg.startswith('--config.') and value == 'None' and FLAGS.config.get(key) == 'None':
      FLAGS.config[key] = None
  return rest


def main(argv):
  if len(argv) > 1 and FLAGS.mode != 'predict':  # predict: --images a.png b.png ...
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  config = FLAGS.config
  import jax
  from mnist_jax import distributed, logs
  from mnist_jax.errors import UserError, first_line
  gc.freeze()
  gc.enable()

  logs.quiet_libraries()
  signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C: KeyboardInterrupt.
  signal.signal(signal.SIGTERM, _terminated)  # kill, a scheduler's preemption: the same way.
  multihost = False
  try:
    multihost = FLAGS.multihost
    if multihost is None:
      multihost = bool(FLAGS.coordinator_address) or distributed.detected()
    if multihost:
      if FLAGS.mode != 'train':
        raise UserError(f'--mode={FLAGS.mode} runs in one process; several processes '
                        'only train. Run it once, with --nomultihost.')
      distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                             FLAGS.process_id, FLAGS.heartbeat_timeout_s)
      if jax.process_index():
        logging.set_verbosity(logging.WARNING)  # Process 0 tells the story.
    logging.info('JAX devices: %s (process %d of %d)', jax.devices(), jax.process_index(),
                 jax.process_count())
    run_mode(config, argv)
  except UserError as e:
    _exit_with(str(e))
  except _Terminated:
    _exit_interrupted(TERMINATED)
  except KeyboardInterrupt:
    _exit_interrupted()
  except Exception as e:  # pylint: disable=broad-except
    if not multihost or jax.process_count() == 1:
      raise
    # Another process died: the collectives fail here at once (JaxRuntimeError), or
    # what else waited on it fails its own way (once in CI, where the kill came just
    # after a checkpoint, the process got to exit and aborted in the shutdown barrier).
    if not isinstance(e, jax.errors.JaxRuntimeError):
      traceback.print_exc()
    cause = first_line(e).replace('Error dispatching computation: ', '')
    _exit_with(f'process {jax.process_index()} of this {jax.process_count()}-process run '
               f'cannot go on: {cause}\nAnother process most likely stopped; its own log '
               'says why. The checkpoints written so far are kept: start all the processes '
               'again to resume.')


class _Terminated(KeyboardInterrupt):
  """SIGTERM, stopping the run as Ctrl-C does."""


def _terminated(signum, frame):
  del signum, frame
  raise _Terminated()


def _exit_interrupted(status: int = INTERRUPTED):
  """Ctrl-C (or SIGTERM): what was kept, in one line, and exit 130 (143) at once.

  The `with` blocks have closed by now (pending checkpoint saves finished).
  Exiting without the interpreter's shutdown is deliberate: interrupted during
  a compilation, processes died of a segmentation fault at exit (3 of 4 runs on
  a 2-core EPYC; none of 6 on a Xeon), most likely Python tearing its modules
  down under XLA's still-running threads, a teardown os._exit skips.
  """
  message = 'Interrupted.'
  if FLAGS.mode == 'train':
    folder = os.path.join(FLAGS.workdir, 'checkpoints')
    steps = [int(n) for n in os.listdir(folder) if n.isdigit()] if os.path.isdir(folder) else []
    message = (f'Interrupted; the checkpoint at step {max(steps)} is kept: run the same '
               'command again to resume from it.' if steps else
               'Interrupted before the first checkpoint: run the same command again to '
               'start over.')
  elif FLAGS.mode == 'sweep':
    message = ('Interrupted; finished trials are kept in the study and this one\'s seeds '
               'keep their checkpoints: run the same command again to resume.')
  logging.flush()
  print(f'\n{message}', file=sys.stderr, flush=True)
  sys.stdout.flush()
  os._exit(status)


def run_mode(config, argv):
  """--mode's work, in this process. Each mode imports only what it runs: eval,
  predict and serve never load the training code."""
  from mnist_jax.errors import UserError
  if FLAGS.mode == 'train':
    import jax
    from mnist_jax import train
    metrics = train.train_and_evaluate(config, FLAGS.workdir, start_time=START_TIME,
                                       resume_with_changes=FLAGS.resume_with_changes)
    useless = train.learned_nothing(metrics, config)
    if useless:
      raise UserError(useless)
    if jax.process_index() == 0:
      print(train.summary(FLAGS.workdir), flush=True)
  elif FLAGS.mode == 'serve':
    from mnist_jax import serve
    serve.serve(FLAGS.workdir, FLAGS.host, FLAGS.port, FLAGS.checkpoint_step)
  elif FLAGS.mode == 'sweep':
    from mnist_jax import sweep
    if not FLAGS.sweep:
      raise UserError('--mode=sweep needs --sweep=SPEC (a file like sweeps/fast.py).')
    sweep.run_sweep(config, FLAGS.workdir, FLAGS.sweep, FLAGS.sweep_storage)
  elif FLAGS.mode == 'explore':
    from mnist_jax import config_lib, explore
    if os.path.isfile(os.path.join(FLAGS.workdir, 'config.json')):  # A trained run's data,
      config = config_lib.load_saved(FLAGS.workdir, config)  # as eval and predict read it.
    explore.explore(config, FLAGS.workdir)
  elif FLAGS.mode == 'eval':
    from mnist_jax import evaluate
    evaluate.evaluate([FLAGS.workdir, *FLAGS.ensemble], config, FLAGS.checkpoint_step,
                      tta=FLAGS.tta)
  else:
    from mnist_jax import predict
    if not FLAGS.images:
      raise UserError('--mode=predict needs --images=PATH (files or folders).')
    failed = predict.predict_files(FLAGS.images + argv[1:], FLAGS.workdir,
                                   FLAGS.checkpoint_step, FLAGS.save_preprocessed)
    if failed:
      _exit_with(f'{failed} image(s) could not be read; see their "error" lines.')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
