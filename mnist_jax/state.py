"""The training state: what a step changes and a checkpoint holds, created from
the config's seed or as the shapes a checkpoint restores onto."""

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from mnist_jax import models


@flax.struct.dataclass
class TrainState:
  """Everything a step changes; checkpointed as one pytree."""
  step: jax.Array
  params: Any  # nnx.State of nnx.Param.
  model_state: Any  # nnx.State of everything else (batch-norm statistics).
  opt_state: Any
  # Bias-corrected exponential moving average of params (config.ema_decay), or
  # None: see step.ema_update.
  ema_params: Any

  @property
  def eval_params(self):
    """The weights evaluation and prediction use: the average where there is one."""
    return self.params if self.ema_params is None else self.ema_params


def make_mesh() -> jax.sharding.Mesh:
  """A one-axis mesh over every device: data parallelism."""
  return jax.make_mesh((jax.device_count(),), ('data',),
                       axis_types=(jax.sharding.AxisType.Auto,))


@jax.jit  # One program, where eagerly it was three.
def seed_keys(seed: int):
  """The three independent streams every run derives from its seed."""
  init, data, dropout = jax.random.split(jax.random.key(seed), 3)
  return init, data, dropout


@functools.cache
def _model_initializer(model_config):
  """(graph definition, jitted: seed -> (params, other model state)) of a model.

  One program rather than one per random initializer, compiled once per model in
  a process (tests, sweeps); the same values as eagerly.
  """
  graphdef = nnx.graphdef(nnx.eval_shape(lambda: models.create_model(model_config, seed=0)))

  @jax.jit
  def init(seed):
    init_key, _, _ = seed_keys(seed)
    model_seed = jax.random.randint(init_key, (), 0, 2**31 - 1)
    _, params, model_state = nnx.split(
        models.create_model(model_config, seed=jax.random.key(model_seed)), nnx.Param, ...)
    return params, model_state

  return graphdef, init


def _fresh_state(config, tx):
  graphdef, init = _model_initializer(models.model_config(config))
  params, model_state = init(config.seed)
  return graphdef, TrainState(
      step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
      opt_state=tx.init(params),
      ema_params=jax.tree.map(jnp.copy, params) if config.ema_decay else None)


def init_state(config, tx, mesh):
  """A fresh, replicated TrainState, and the model's graph definition."""
  graphdef, state = _fresh_state(config, tx)
  return graphdef, jax.device_put(state, NamedSharding(mesh, P()))


def abstract_state(config, tx, mesh):
  """The graph definition and the TrainState's shapes, dtypes and (replicated)
  shardings, without initialising anything: the target a checkpoint restores onto."""
  graphdef, _ = _model_initializer(models.model_config(config))
  state = jax.eval_shape(lambda: _fresh_state(config, tx)[1])
  replicated = NamedSharding(mesh, P())
  return graphdef, jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), state)
