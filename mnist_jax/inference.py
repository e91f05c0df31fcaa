"""A trained model: restored from its workdir, and run over whole datasets exactly.

Evaluation, prediction and the page use this module; training imports it too
(for its evaluators), never the other way round.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from mnist_jax import checkpoints, input_pipeline, models, optimizer, state as state_lib
from mnist_jax.errors import UserError


def loss_and_correct(logits, labels, label_smoothing=0.0):
  """Per-example cross-entropy (optionally smoothed) and 0/1 correctness."""
  targets = optax.smooth_labels(jax.nn.one_hot(labels, models.NUM_CLASSES), label_smoothing)
  loss = optax.softmax_cross_entropy(logits, targets)
  return loss, (jnp.argmax(logits, -1) == labels)


class Evaluator:
  """Exact evaluation: the last batch is padded, and the padding's logits dropped."""

  def __init__(self, graphdef, split: input_pipeline.Split, dataset: str,
               batch_size: int, mesh):
    n = len(split)
    batch_size = -(-batch_size // mesh.size) * mesh.size  # Divisible by devices.
    num_batches = -(-n // batch_size)
    pad = num_batches * batch_size - n
    images = np.concatenate([split.images, np.zeros((pad, *split.images.shape[1:]), np.uint8)])
    self.num_examples = n
    self.labels = jax.device_put(split.labels, NamedSharding(mesh, P()))
    self.batches = jax.device_put(images.reshape(num_batches, batch_size, *images.shape[1:]),
                                  NamedSharding(mesh, P(None, 'data')))

    @jax.jit(out_shardings=NamedSharding(mesh, P()))  # Readable on every process.
    def logits_fn(params, model_state, batches):
      model = nnx.merge(graphdef, params, model_state, copy=True)
      logits = jax.lax.map(lambda b: model(input_pipeline.normalize(b, dataset)), batches)
      return logits.reshape(-1, models.NUM_CLASSES)[:n]

    # The metrics in the same program: as eager operations on the logits they
    # would be a dozen more programs to compile or load at start-up.
    @jax.jit(out_shardings=NamedSharding(mesh, P()))
    def metrics_fn(params, model_state, batches, labels):
      loss, correct = loss_and_correct(logits_fn(params, model_state, batches), labels)
      return loss.mean(), correct.sum()

    self._logits_fn, self._metrics_fn = logits_fn, metrics_fn

  def logits(self, params, model_state) -> jax.Array:
    """Logits for every example, in order: [N, 10]."""
    return self._logits_fn(params, model_state, self.batches)

  def metrics(self, params, model_state) -> dict[str, float]:
    """Loss and accuracy over all examples."""
    loss, correct = self._metrics_fn(params, model_state, self.batches, self.labels)
    # A count over a count: in float32, 9,900 of 10,000 came out as 0.98999995 < 0.99.
    return {'loss': float(loss), 'accuracy': int(correct) / self.num_examples}


def restore(workdir: str, config, step: int | None = None):
  """(graphdef, TrainState, mesh) of a run's checkpoint (default: the latest).

  The state is placed on this host's devices, whatever device count wrote it.
  """
  mesh = state_lib.make_mesh()
  # The optimizer only gives the checkpoint's structure, which is the same
  # whatever the schedule's length.
  graphdef, abstract = state_lib.abstract_state(
      config, optimizer.create(config, total_steps=1), mesh)
  directory = os.path.join(workdir, 'checkpoints')
  missing = UserError(f'No checkpoint in {workdir}: train one first with '
                      f'python main.py --workdir={workdir}')
  if not os.path.isdir(directory):
    raise missing
  with checkpoints.Manager(directory, config.keep_checkpoints) as ckpt:
    if ckpt.latest_step() is None:
      raise missing
    return graphdef, ckpt.restore(abstract, step, required=True), mesh
