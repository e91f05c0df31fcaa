"""Data loading, normalization and augmentation."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import scipy.ndimage
import pytest

from conftest import synthetic_split
from mnist_jax import input_pipeline
from mnist_jax.errors import UserError


def test_first_tfds_read_is_cached_and_cut_into_process_shares(tmp_path, monkeypatch):
  calls = []
  splits = {'train': synthetic_split(20), 'test': synthetic_split(10, seed=1)}
  monkeypatch.setattr(input_pipeline, '_load_with_tfds',
                      lambda *args: calls.append(args) or splits)
  first = input_pipeline.load('mnist', data_dir=str(tmp_path))
  second = input_pipeline.load('mnist', data_dir=str(tmp_path), splits=('test',))
  assert len(calls) == 1  # The second read came from the cache, without tfds.
  assert set(second) == {'test'}
  for split in ('train', 'test'):
    np.testing.assert_array_equal(first[split].images, splits[split].images)
  np.testing.assert_array_equal(second['test'].labels, splits['test'].labels)
  assert second['test'].images.dtype == np.uint8
  assert (tmp_path / 'mnist_jax_arrays' / 'mnist' / 'train_images.npy').is_file()

  # Each of 3 processes reads its own share; together they are the whole, in order.
  shares = [input_pipeline.load('mnist', data_dir=str(tmp_path), share=(i, 3))
            for i in range(3)]
  assert len(calls) == 1
  for split in ('train', 'test'):
    sizes = [len(share[split]) for share in shares]
    assert max(sizes) - min(sizes) <= 1
    np.testing.assert_array_equal(
        np.concatenate([share[split].images for share in shares]), splits[split].images)


def test_without_tensorflow_preparing_the_data_is_one_message(tmp_path, monkeypatch):
  """TensorFlow is an extra ([tf]): a machine without one is told how to get it."""
  import tensorflow_datasets  # pylint: disable=g-import-not-at-top,unused-import
  # Imported whole first: a tfds imported while TensorFlow is missing stays broken.
  monkeypatch.setitem(sys.modules, 'tensorflow', None)  # `import tensorflow` fails.
  (tmp_path / 'manual').mkdir()
  for name in input_pipeline.OFFICIAL_FILES:
    (tmp_path / 'manual' / name).write_bytes(b'')
  with pytest.raises(UserError, match=r'needs TensorFlow.*pip install -e \.\[tf\]'):
    input_pipeline.load('mnist', str(tmp_path / 'tfds'), str(tmp_path / 'manual'))


def test_normalize_uses_dataset_statistics():
  images = np.array([0, 255], np.uint8)
  mean, std = input_pipeline.PIXEL_STATS['mnist']
  np.testing.assert_allclose(input_pipeline.normalize(images, 'mnist'),
                             [-mean / std, (1 - mean) / std], rtol=1e-6)


def test_random_shift_moves_content_and_keeps_shapes():
  images = np.zeros((64, 28, 28, 1), np.uint8)
  images[:, 10:18, 10:18] = 255  # An 8x8 square, away from the borders.
  shifted = np.asarray(input_pipeline.random_shift(jnp.asarray(images), jax.random.key(0), 2))
  assert shifted.shape == images.shape and shifted.dtype == np.uint8
  offsets = set()
  for image in shifted:
    ys, xs = np.nonzero(image[..., 0])
    assert len(ys) == 64  # Nothing lost: the square moved, whole.
    offsets.add((ys.min() - 10, xs.min() - 10))
  assert all(-2 <= dy <= 2 and -2 <= dx <= 2 for dy, dx in offsets)
  assert len(offsets) > 10  # Different shifts for different images.


def test_random_affine_with_no_change_is_identity():
  images = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1)).astype(np.uint8)
  out = input_pipeline.random_affine(jnp.asarray(images), jax.random.key(0), 0.0, 0.0, 0.0)
  np.testing.assert_allclose(out, images, atol=1e-3)


def test_random_affine_rotates_and_keeps_the_digit_in_frame():
  images = np.zeros((32, 28, 28, 1), np.uint8)
  images[:, 6:22, 12:16] = 255  # A vertical bar: a '1'.
  out = np.asarray(input_pipeline.random_affine(jnp.asarray(images), jax.random.key(1),
                                                30.0, 0.1, 2.0))
  assert out.shape == images.shape
  mass = out.sum(axis=(1, 2, 3))
  np.testing.assert_allclose(mass, images[0].sum() * np.ones(32), rtol=0.25)  # Scale <= 1.1^2.
  assert not np.allclose(out[0], out[1])  # Each image has its own transform.
  # The bar's orientation changes: the second moments of the pixel mass differ.
  def tilt(image):
    ys, xs = np.nonzero(image[..., 0] > 64)
    return np.corrcoef(ys, xs)[0, 1]
  assert np.ptp([tilt(o) for o in out]) > 0.5


def test_elastic_displacement_is_scipys_gaussian_filter_of_the_same_noise():
  key = jax.random.key(3)
  shape = (2, 28, 28)
  noise = np.asarray(jax.random.uniform(key, shape, minval=-1.0, maxval=1.0))
  ours = np.asarray(input_pipeline.elastic_displacement(key, shape, 34.0, 4.0))
  for n in range(2):  # truncate=10: scipy's kernel as whole as ours.
    expected = 34.0 * scipy.ndimage.gaussian_filter(noise[n], 4.0, mode='constant', truncate=10)
    np.testing.assert_allclose(ours[n], expected, atol=1e-4)
  assert 0.5 < np.abs(ours).mean() < 2.0  # Simard's 34 and 4: about a pixel.


def test_elastic_distortion_bends_strokes_and_keeps_the_digit():
  images = np.zeros((16, 28, 28, 1), np.uint8)
  images[:, 6:22, 12:16] = 255
  plain = np.asarray(input_pipeline.random_affine(jnp.asarray(images), jax.random.key(1),
                                                  10.0, 0.1, 2.0))
  bent = np.asarray(input_pipeline.random_affine(jnp.asarray(images), jax.random.key(1),
                                                 10.0, 0.1, 2.0, 34.0, 4.0))
  assert not np.allclose(plain, bent)
  ratio = bent.sum(axis=(1, 2, 3)) / plain.sum(axis=(1, 2, 3))
  assert 0.5 < ratio.min() and ratio.max() < 2.0  # Strokes stretch or squeeze, not vanish.
  # The affine part is drawn as without it (earlier runs' augmentations stay as they were).
  barely = np.asarray(input_pipeline.random_affine(jnp.asarray(images), jax.random.key(1),
                                                   10.0, 0.1, 2.0, 1e-3, 4.0))
  np.testing.assert_allclose(barely, plain, atol=0.5)
  # A straight bar no longer lies on one line: its columns' centres wander.
  def wander(image):
    rows = [np.nonzero(r > 64)[0] for r in image[8:20, :, 0]]
    return np.ptp([r.mean() for r in rows if len(r)])
  straight = np.asarray(input_pipeline.random_affine(jnp.asarray(images), jax.random.key(2),
                                                     0.0, 0.0, 0.0, 34.0, 4.0))
  assert np.mean([wander(s) for s in straight]) > 0.5


def test_random_erasing_blanks_one_rectangle_of_2_to_20_percent():
  images = jnp.full((64, 28, 28, 1), 200, jnp.uint8)
  key = jax.random.PRNGKey(0)
  np.testing.assert_array_equal(input_pipeline.random_erase(images, key, 0.0), images)
  erased = np.asarray(input_pipeline.random_erase(images, key, 1.0))[..., 0] == 0
  for mask in erased:
    ys, xs = np.nonzero(mask)
    assert mask.sum() == (np.ptp(ys) + 1) * (np.ptp(xs) + 1)  # One solid rectangle,
    assert 0.015 * 784 <= mask.sum() <= 0.21 * 784  # 2-20% of the image (whole pixels).
  assert len({int(m.sum()) for m in erased}) > 10  # Of many sizes.


def test_squish_scales_height_and_width_apart():
  """A centred square, squished only: its height and width change independently."""
  images = np.zeros((32, 28, 28, 1), np.uint8)
  images[:, 9:19, 9:19] = 255
  out = np.asarray(input_pipeline.random_affine(jnp.asarray(images), jax.random.PRNGKey(1),
                                                0.0, 0.0, 0.0, max_squish=0.5))[..., 0] > 127
  ratios = [np.ptp(np.nonzero(m)[0]) / np.ptp(np.nonzero(m)[1]) for m in out]
  assert min(ratios) < 0.8 and max(ratios) > 1.25, ratios
  same = np.asarray(input_pipeline.random_affine(jnp.asarray(images), jax.random.PRNGKey(1),
                                                 0.0, 0.0, 0.0))[..., 0] > 127
  np.testing.assert_array_equal(same, images[..., 0] > 127)  # No squish: unchanged.
