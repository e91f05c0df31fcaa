"""Model shapes and the custom pooling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import default, mlp
from mnist_jax import models


@pytest.mark.parametrize('get_config', [default.get_config, mlp.get_config])
@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_logits_shape_and_dtype(get_config, dtype):
  config = get_config()
  config.compute_dtype = dtype
  model = models.create_model(config, seed=0)
  x = jnp.zeros((3, 28, 28, 1))
  logits = model(x)
  assert logits.shape == (3, 10) and logits.dtype == jnp.float32
  train_logits = model(x, train=True, key=jax.random.key(0))
  assert train_logits.shape == (3, 10)


def test_seed_decides_init():
  config = default.get_config()
  p = [nnx.state(models.create_model(config, seed=s), nnx.Param) for s in (0, 0, 1)]
  leaves = [jax.tree.leaves(x) for x in p]
  assert all(np.array_equal(a, b) for a, b in zip(leaves[0], leaves[1]))
  assert not all(np.array_equal(a, b) for a, b in zip(leaves[0], leaves[2]))


def test_max_pool_matches_reduce_window():
  x = jax.random.normal(jax.random.key(0), (2, 7, 6, 3))
  expected = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), 'VALID')
  np.testing.assert_array_equal(models.max_pool_2x2(x), expected)


def test_dropout_active_only_in_training():
  config = default.get_config()
  config.dropout_rate = 0.5
  model = models.create_model(config, seed=0)
  x = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
  np.testing.assert_array_equal(model(x), model(x))
  a = model(x, train=True, key=jax.random.key(0))
  b = model(x, train=True, key=jax.random.key(1))
  assert not np.allclose(a, b)
