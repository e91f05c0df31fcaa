"""Reads MNIST-style datasets through tfds once and keeps them as arrays.

MNIST fits in memory many times over, so each split is read once and kept as a
uint8 array; batches are cut from it on the device (see `step.py`). Measured
on a 2-core CPU, the Flax example's streaming tf.data loop stalled for ~35 s in
9 of 16 epochs; an in-memory array never waits for the host.
"""

import dataclasses
import os
import socket
import sys
from typing import Optional

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax import workdir as workdir_lib
from mnist_jax.errors import UserError

# The four official files every MNIST-format dataset is distributed as.
OFFICIAL_FILES = (
    'train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz',
    't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz',
)

CLASS_NAMES = {
    'mnist': tuple(str(i) for i in range(10)),
    'fashion_mnist': ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
                      'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'),
}

# Pixel mean and standard deviation of each training set (pixels in [0, 1]),
# measured with `main.py --mode=explore`; inputs are standardized with them.
PIXEL_STATS = {
    'mnist': (0.1307, 0.3081),
    'fashion_mnist': (0.2860, 0.3530),
}


# Where tfds downloads MNIST and Fashion-MNIST from.
DOWNLOAD_HOST = 'storage.googleapis.com'


def _can_reach(host: str, timeout_s: float = 5.0) -> bool:
  """Whether a TCP connection to host:443 opens within the timeout."""
  try:
    socket.create_connection((host, 443), timeout=timeout_s).close()
    return True
  except OSError:
    return False


@dataclasses.dataclass(frozen=True)
class Split:
  """One split as arrays: images uint8 [N, 28, 28, 1], labels int32 [N]."""
  images: np.ndarray
  labels: np.ndarray

  def __len__(self):
    return len(self.labels)


def side_by_side(digits, gaps, margin: tuple[int, int] = (0, 0)) -> np.ndarray:
  """A number as one image: digits (uint8 [H, W], ink high, one height), each cut to
  the columns its ink spans, pasted left to right with `gaps[i]` pixels after the
  i-th (negative: overlapping, the brighter ink kept), `margin` (rows, columns) of
  blank all round."""
  pieces = []
  for digit in digits:
    xs = np.nonzero(digit.max(0))[0]
    pieces.append(digit[:, xs.min():xs.max() + 1])
  rows, cols = margin
  height = pieces[0].shape[0]
  out = np.zeros((height + 2 * rows, sum(p.shape[1] for p in pieces) + sum(gaps) + 2 * cols),
                 np.uint8)
  x = cols
  for piece, gap in zip(pieces, [*gaps, 0]):
    region = out[rows:rows + height, x:x + piece.shape[1]]
    np.maximum(region, piece, out=region)
    x += piece.shape[1] + gap
  return out


def hold_out(data: dict[str, Split], size: int) -> dict[str, Split]:
  """Moves the last `size` training images into a 'validation' split (size 0: none).

  The last ones, whatever the seed, device or process count: every process
  holds the whole training set in its original order (see distributed.py), so
  they all cut the same images, and a trained model's validation images are
  known from its config alone.
  """
  if not size:
    return data
  train = data['train']
  if len(train) <= size:
    raise UserError(f'--config.validation_size={size} leaves no training images '
                    f'(the training split has {len(train):,}).')
  return {**data, 'train': Split(train.images[:-size], train.labels[:-size]),
          'validation': Split(train.images[-size:], train.labels[-size:])}


def normalize(images, dataset: str):
  """uint8 pixels -> standardized float32; works on numpy and jax arrays."""
  mean, std = PIXEL_STATS[dataset]
  return (images.astype('float32') / 255.0 - mean) / std


def random_shift(images, key, max_shift: int):
  """Shifts each image by up to `max_shift` pixels in x and y (zeros fill in).

  Runs inside the jitted train step, on the device. Labels are unchanged: a
  digit moved by a pixel or two is the same digit.
  """
  n, h, w, c = images.shape
  padded = jnp.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
  offsets = jax.random.randint(key, (n, 2), 0, 2 * max_shift + 1)
  crop = lambda image, o: jax.lax.dynamic_slice(image, (o[0], o[1], 0), (h, w, c))
  return jax.vmap(crop)(padded, offsets)


def random_affine(images, key, max_rotation_deg: float, max_scale: float, max_shift: float,
                  elastic_alpha: float = 0.0, elastic_sigma: float = 4.0,
                  max_squish: float = 0.0):
  """Random rotation, scaling and shift of each image (bilinear, zeros fill in).

  Rotation in [-max_rotation_deg, max_rotation_deg], scale in
  [1 / (1 + max_scale), 1 + max_scale], shift in [-max_shift, max_shift] pixels
  on each axis, all about the image centre. With `elastic_alpha` > 0, also an
  elastic distortion (Simard, Steinkraus and Platt, 2003): every pixel moves by
  its own displacement, uniform noise in [-1, 1] smoothed by a Gaussian of
  `elastic_sigma` pixels and scaled by `elastic_alpha` (their 34 and 4 move a
  pixel by about one on average: strokes bend, the digit stays). With
  `max_squish` > 0, height and width are also scaled apart, each in
  [1 / (1 + max_squish), 1 + max_squish]. Runs on the device; labels are
  unchanged. Returns float32 in the input's value range.
  """
  n, h, w, _ = images.shape
  k_angle, k_scale, k_shift = jax.random.split(key, 3)
  angle = jnp.deg2rad(jax.random.uniform(k_angle, (n,), minval=-max_rotation_deg,
                                         maxval=max_rotation_deg))
  log_scale = jnp.log1p(max_scale)
  scale = jnp.exp(jax.random.uniform(k_scale, (n,), minval=-log_scale, maxval=log_scale))
  shift = jax.random.uniform(k_shift, (n, 2), minval=-max_shift, maxval=max_shift)
  cy, cx = (h - 1) / 2, (w - 1) / 2
  oy, ox = jnp.meshgrid(jnp.arange(h) - cy, jnp.arange(w) - cx, indexing='ij')

  # fold_in: the affine draws stay what they were before elastic distortions existed.
  displacement = (elastic_displacement(jax.random.fold_in(key, 4), (n, 2, h, w), elastic_alpha,
                                       elastic_sigma)
                  if elastic_alpha else None)  # None: an empty pytree, vmap passes it on.
  log_squish = jnp.log1p(max_squish)
  squish = jnp.exp(jax.random.uniform(jax.random.fold_in(key, 5), (n, 2), minval=-log_squish,
                                      maxval=log_squish))

  def warp(image, angle, scale, shift, displacement, squish):
    # Where each output pixel comes from: the inverse transform.
    y, x = oy - shift[0], ox - shift[1]
    cos, sin = jnp.cos(angle) / scale, jnp.sin(angle) / scale
    sy = (cos * y - sin * x) / squish[0] + cy
    sx = (sin * y + cos * x) / squish[1] + cx
    if displacement is not None:
      sy, sx = sy + displacement[0], sx + displacement[1]
    return jax.scipy.ndimage.map_coordinates(image[..., 0].astype(jnp.float32), [sy, sx],
                                             order=1, mode='constant', cval=0.0)[..., None]

  return jax.vmap(warp)(images, angle, scale, shift, displacement, squish)


def random_erase(images, key, probability: float):
  """Blanks (sets to 0, MNIST's background) one rectangle in each image with
  `probability`: 2-20% of its area, height/width ratio in [0.3, 3.3], anywhere
  inside it (random erasing, Zhong et al. 2020). Runs on the device."""
  n, h, w, _ = images.shape
  k_on, k_area, k_ratio, k_y, k_x = jax.random.split(key, 5)
  area = jax.random.uniform(k_area, (n,), minval=0.02, maxval=0.2) * h * w
  ratio = jnp.exp(jax.random.uniform(k_ratio, (n,), minval=jnp.log(0.3), maxval=-jnp.log(0.3)))
  eh = jnp.clip(jnp.round(jnp.sqrt(area * ratio)), 1, h)
  ew = jnp.clip(jnp.round(jnp.sqrt(area / ratio)), 1, w)
  y0 = jnp.floor(jax.random.uniform(k_y, (n,)) * (h - eh + 1))
  x0 = jnp.floor(jax.random.uniform(k_x, (n,)) * (w - ew + 1))
  ys, xs = jnp.arange(h)[None, :, None], jnp.arange(w)[None, None, :]
  inside = ((ys >= y0[:, None, None]) & (ys < (y0 + eh)[:, None, None])
            & (xs >= x0[:, None, None]) & (xs < (x0 + ew)[:, None, None]))
  erase = inside & (jax.random.uniform(k_on, (n,)) < probability)[:, None, None]
  return jnp.where(erase[..., None], jnp.zeros_like(images), images)


def elastic_displacement(key, shape, alpha: float, sigma: float):
  """alpha * (uniform [-1, 1] noise of `shape`, Gaussian-smoothed over its last two axes).

  What scipy.ndimage.gaussian_filter(noise, sigma, mode='constant') computes (zeros
  beyond the border; it cuts the kernel at 4 sigma, this does not), as two matrix
  products so that it runs on the device.
  """
  h, w = shape[-2:]
  ty, tx = (jnp.exp(-0.5 * (jnp.arange(k)[:, None] - jnp.arange(k)) ** 2 / sigma ** 2)
            for k in (h, w))
  noise = jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)
  return alpha * jnp.einsum('ij,...jk,lk->...il', ty, noise, tx) / (2 * jnp.pi * sigma ** 2)


def _missing_files(manual_dir: str) -> list[str]:
  return [f for f in OFFICIAL_FILES if not os.path.isfile(os.path.join(manual_dir, f))]


def _missing_data_message(dataset: str, manual_dir: Optional[str], cause) -> str:
  missing = _missing_files(manual_dir) if manual_dir else []
  if not manual_dir:
    where = 'no --config.manual_dir was given and tfds could not download it'
  elif missing:
    where = f'--config.manual_dir={manual_dir} is missing {", ".join(missing)}'
  else:
    where = f'tfds could not prepare the files in --config.manual_dir={manual_dir}'
  return (
      f'Could not prepare the {dataset!r} dataset: {where}. '
      f'Without network access, put the four official files ({", ".join(OFFICIAL_FILES)}) '
      f'of {dataset} in one folder and pass --config.manual_dir=FOLDER '
      f'(and optionally --config.data_dir=DIR for where tfds keeps the prepared '
      f'copy). Underlying error: {type(cause).__name__}: {cause}')


def load(dataset: str, data_dir: Optional[str] = None, manual_dir: Optional[str] = None,
         splits=('train', 'test'), share: Optional[tuple[int, int]] = None
         ) -> dict[str, Split]:
  """Returns `{split: Split}` for an MNIST-format tfds dataset.

  Online, tfds downloads as usual. Offline, `manual_dir` names a folder with
  the four official `.gz` files; `data_dir` is tfds's data folder. The first
  whole read decodes both splits through tfds and keeps them as .npy files
  beside tfds's data, so later runs start without importing TensorFlow (~8 s
  here).

  `share=(i, n)`: only the i-th of n contiguous, nearly equal parts of each
  split (what each process of an n-process run reads), cut from the cached
  files without reading the rest, or read through tfds as a sliced split.
  """
  if dataset not in CLASS_NAMES:
    raise UserError(f'Unknown dataset {dataset!r}; choose one of {tuple(CLASS_NAMES)}.')
  if is_cached(dataset, data_dir):
    cache = _cache_dir(dataset, data_dir)
    try:
      return {s: _read_cached(cache, s, share) for s in splits}
    except DamagedCache as e:  # Derived from tfds's copy: made again from it.
      logging.warning('The decoded arrays in %s are damaged (%s); decoding them again.',
                      cache, e)
      for name in os.listdir(cache):
        os.remove(os.path.join(cache, name))
  if share is not None:
    return _load_with_tfds(dataset, data_dir, manual_dir, splits, share)
  out = _load_with_tfds(dataset, data_dir, manual_dir)
  save_cache(dataset, data_dir, out)
  return {s: out[s] for s in splits}


def share_bounds(num_examples: int, share: tuple[int, int]) -> tuple[int, int]:
  """[start, stop) of share i of n: contiguous, sizes differ by at most one."""
  i, n = share
  return i * num_examples // n, (i + 1) * num_examples // n


def _cache_dir(dataset: str, data_dir: Optional[str]) -> str:
  """Where the decoded arrays are kept, beside tfds's own prepared copy."""
  root = os.path.expanduser(data_dir or os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets'))
  return os.path.join(root, 'mnist_jax_arrays', dataset)


def is_cached(dataset: str, data_dir: Optional[str]) -> bool:
  cache = _cache_dir(dataset, data_dir)
  return all(os.path.isfile(os.path.join(cache, f'{s}_{k}.npy'))
             for s in ('train', 'test') for k in ('images', 'labels'))


def _read_cached(cache: str, split: str, share) -> Split:
  """One split from the cache, checked: files that open whole, uint8 images of
  28x28x1, one integer label in 0-9 for each image."""
  try:
    images, labels = (np.load(os.path.join(cache, f'{split}_{k}.npy'), mmap_mode='r')
                      for k in ('images', 'labels'))
  except (OSError, ValueError, EOFError) as e:  # Truncated, empty or not .npy at all.
    raise DamagedCache(f'{split}: {e}') from e
  if (images.dtype != np.uint8 or images.shape[1:] != (28, 28, 1) or labels.ndim != 1
      or labels.dtype.kind not in 'iu' or len(labels) != len(images) or not len(labels)):
    raise DamagedCache(f'{split}: images {images.dtype}{list(images.shape)} and labels '
                       f'{labels.dtype}{list(labels.shape)}, where uint8[N, 28, 28, 1] and '
                       'int[N] belong')
  start, stop = share_bounds(len(labels), share) if share else (0, len(labels))
  split_labels = np.array(labels[start:stop], np.int32)
  if split_labels.size and not 0 <= split_labels.min() <= split_labels.max() <= 9:
    raise DamagedCache(f'{split}: labels outside 0-9')
  return Split(np.array(images[start:stop]), split_labels)


class DamagedCache(Exception):
  """A decoded-array file that cannot be read or does not hold a split."""


def save_cache(dataset: str, data_dir: Optional[str], splits: dict[str, Split]) -> None:
  """Saves whole splits, each file atomically; a read-only data_dir goes without."""
  cache = _cache_dir(dataset, data_dir)
  try:
    os.makedirs(cache, exist_ok=True)
    for split, arrays in splits.items():
      for kind in ('images', 'labels'):
        path = os.path.join(cache, f'{split}_{kind}.npy')
        tmp = f'{path}.{os.getpid()}.tmp.npy'
        np.save(tmp, getattr(arrays, kind))
        os.replace(tmp, path)
  except OSError:
    pass


def _check_writable(folder: str) -> None:
  """tfds prepares a dataset in `folder`: it must take files (else tfds's error
  reads as if the official files were missing)."""
  try:
    workdir_lib.make_writable_folder(folder)
  except OSError as e:
    raise UserError(f'Cannot write to {folder} ({e.strerror or e}): tfds prepares the dataset '
                    'there the first time. Pass --config.data_dir=A_FOLDER_YOU_CAN_WRITE_TO '
                    '(or make that one writable).') from e


def _load_with_tfds(dataset: str, data_dir: Optional[str], manual_dir: Optional[str],
                    splits=('train', 'test'), share: Optional[tuple[int, int]] = None):
  """`splits` (or their `share`) through tfds: download or manual_dir, then decode."""
  if manual_dir is not None:
    manual_dir = os.path.expanduser(manual_dir)
    if _missing_files(manual_dir):  # The message names them.
      raise UserError(_missing_data_message(dataset, manual_dir, FileNotFoundError(
          f'files not found in {manual_dir}')))
  # TensorFlow costs seconds to import: only the data loading pays for it. It only
  # decodes the files here, so its INFO logs and oneDNN kernels (announced in two
  # lines at import) are of no use.
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise UserError(f'tfds needs TensorFlow to prepare {dataset} the first time ({e}): '
                    'pip install -e .[tf] (or any TensorFlow build this machine has).') from e
  tf.config.set_visible_devices([], 'GPU')  # Leave accelerators to JAX.

  builder = tfds.builder(dataset, data_dir=data_dir and os.path.expanduser(data_dir))
  if not sys.stderr.isatty():  # Redrawn bars are escape codes in a log file.
    tfds.disable_progress_bar()
  if not builder.is_prepared():
    logging.info('Preparing %s in %s: the first run only (tens of seconds); later runs '
                 'read the decoded arrays.', dataset, builder.data_dir)
    _check_writable(os.path.dirname(os.path.dirname(builder.data_dir)))  # DIR/mnist/3.0.1
    # Offline, tfds retries its downloads for minutes before failing: ask first.
    if manual_dir is None and not _can_reach(DOWNLOAD_HOST):
      raise UserError(_missing_data_message(dataset, None, ConnectionError(
          f'cannot reach {DOWNLOAD_HOST}')))
    try:
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    except Exception as e:  # tfds raises many types for "no network / no file".
      raise UserError(_missing_data_message(dataset, manual_dir, e)) from e
  out = {}
  for split in splits:
    name = split
    if share is not None:
      start, stop = share_bounds(builder.info.splits[split].num_examples, share)
      name = f'{split}[{start}:{stop}]'
    arrays = tfds.as_numpy(builder.as_dataset(split=name, batch_size=-1))
    out[split] = Split(images=np.asarray(arrays['image'], np.uint8),
                       labels=np.asarray(arrays['label'], np.int32))
  return out
