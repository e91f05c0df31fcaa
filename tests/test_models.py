"""Model shapes and the custom pooling."""

import glob
import importlib
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import ROOT
from configs import an2020, byerly2021, default, mlp
from mnist_jax import config_lib, models
from mnist_jax.errors import UserError


SHIPPED = [(os.path.basename(path)[:-3], arg) for path in
           sorted(glob.glob(os.path.join(ROOT, 'configs', '[!_]*.py')))
           for arg in (('3', '5', '7') if path.endswith('an2020.py') else (None,))]


@pytest.mark.parametrize('name,arg', SHIPPED)
def test_every_shipped_config_is_valid_and_sets_only_known_keys(name, arg):
  config = importlib.import_module(f'configs.{name}').get_config(*[arg] * bool(arg))
  config_lib.validate(config)  # Raises UserError naming a bad value.
  assert set(config.keys()) <= set(default.get_config().keys()), name  # A misspelt key.


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


def test_input_crop_reads_only_the_centre():
  """With input_crop=4 the model sees the central 20x20 pixels: its dense layer is
  sized for them, and the border does not change the logits, where it does uncropped."""
  config = default.get_config()
  x = jax.random.uniform(jax.random.key(0), (2, 28, 28, 1))
  border = x.at[:, :4].set(1.0).at[:, -4:].set(1.0).at[:, :, :4].set(1.0).at[:, :, -4:].set(1.0)
  config.input_crop = 4
  cropped = models.create_model(config, seed=0)
  assert cropped.dense.in_features == 5 * 5 * config.conv_features[-1]
  np.testing.assert_array_equal(cropped(x), cropped(border))
  config.input_crop = 0
  full = models.create_model(config, seed=0)
  assert not np.allclose(full(x), full(border))


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


@pytest.mark.parametrize('shape', [(3, 28, 28), (2, 7, 5)])
def test_one_channel_conv_matches_nnx_conv(shape):
  """The first layer's nine-multiply-add convolution: same outputs and gradients
  (kernel, bias and images) as nnx.Conv, under jit, for a cotangent that is not all ones."""
  conv = nnx.Conv(1, 16, kernel_size=(3, 3), rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (*shape, 1))
  cotangent = jax.random.normal(jax.random.key(2), (*shape, 16))
  graphdef, params = nnx.split(conv)

  def loss(params, x, apply):
    return (apply(nnx.merge(graphdef, params), x) * cotangent).sum()

  results = [jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=2)(params, x, apply)
             for apply in (lambda conv, x: conv(x), models.apply_conv)]
  (expected_value, expected_grads), (value, grads) = results
  np.testing.assert_allclose(value, expected_value, rtol=1e-5)
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(expected_grads)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
  np.testing.assert_allclose(models.apply_conv(conv, x), conv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('kernel_size,side', [('3', 8), ('5', 8), ('7', 4)])
def test_an2020_models_shrink_by_unpadded_convolutions_alone(kernel_size, side):
  """An et al.'s three models: no pooling; each k x k convolution takes k - 1 pixels
  off the side, down to `side`, then one dense layer to the logits. (Shapes only:
  test_published_models_compute_... and the recipe's test run the 7x7 one.)"""
  config = an2020.get_config(kernel_size)
  model = nnx.eval_shape(lambda: models.create_model(config, 0))
  assert not hasattr(model, 'dense')
  assert model.head.in_features == side * side * config.conv_features[-1]
  logits = nnx.eval_shape(lambda m, x: m(x, train=True), model, jnp.zeros((2, 28, 28, 1)))
  assert logits.shape == (2, 10) and logits.dtype == jnp.float32


def test_byerly2021_branches_read_capsules_without_routing():
  """Three branches, after the 3rd, 6th and 9th convolution (22x22x64, 16x16x112,
  10x10x160), one weight vector per class and pixel; a class's logit depends on
  its own weights alone (no routing between classes), and every branch counts."""
  full = nnx.eval_shape(lambda: models.create_model(byerly2021.get_config(), 0))
  assert [w.shape for w in full.capsule_weights] == [(10, 484, 64), (10, 256, 112),
                                                     (10, 100, 160)]
  model = models.BranchingHVC((4,) * 9, dtype=jnp.float32, rngs=nnx.Rngs(0))  # Quicker.
  x = jax.random.uniform(jax.random.key(1), (2, 28, 28, 1))
  model(x, train=True)  # Running statistics that are not the initial ones.
  before = model(x)
  assert before.shape == (2, 10) and before.dtype == jnp.float32
  for branch in range(3):
    weights = model.capsule_weights[branch]
    saved = weights[...]
    weights[...] = saved.at[3].multiply(2.0)
    after = model(x)
    weights[...] = saved
    changed = np.abs(np.asarray(after - before)).max(axis=0) > 1e-6
    assert changed.tolist() == [c == 3 for c in range(10)], (branch, changed)
  with pytest.raises(UserError, match='at least 3 conv_features'):
    models.BranchingHVC((8, 8), dtype=jnp.float32, rngs=nnx.Rngs(0))


@pytest.mark.parametrize('config', [an2020.get_config('7'), byerly2021.get_config()],
                         ids=['an2020_7', 'byerly2021'])
def test_published_models_compute_in_bfloat16_close_to_float32(config):
  """For accelerators: compute_dtype=bfloat16 reaches every layer (the logits
  differ from float32's) and keeps them within 5% of their scale (1.5% measured)."""
  x = jax.random.uniform(jax.random.key(1), (16, 28, 28, 1))

  @nnx.jit  # One program rather than op by op: seconds sooner.
  def logits_after_statistics(model):
    model(x, train=True)  # Running statistics of these images.
    return model(x)

  logits = {}
  for dtype in ('float32', 'bfloat16'):
    config.compute_dtype = dtype
    logits[dtype] = np.asarray(logits_after_statistics(models.create_model(config, 0)))
  full, half = logits['float32'], logits['bfloat16']
  assert not np.array_equal(full, half)
  assert np.abs(full - half).max() < 0.05 * np.abs(full).max()
