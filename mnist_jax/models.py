"""Flax NNX models, chosen by `config.model`.

Every model maps a batch of normalized images `[B, 28, 28, 1]` to logits
`[B, 10]` and takes `train` (dropout and batch-norm statistics on) and a dropout
`key` explicitly, so that the training loop can call it as a pure function and
derive every random number from the config's seed.
"""

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from mnist_jax.errors import UserError

NUM_CLASSES = 10


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 max-pooling as reshape + max.

  Measured here on XLA:CPU, the gradient of `reduce_window` max-pooling costs
  more than the convolutions around it; a reshape followed by a max reduces to
  a cheap select in the backward pass. Odd sizes are cropped, as 'VALID'
  pooling would.
  """
  b, h, w, c = x.shape
  x = x[:, : h // 2 * 2, : w // 2 * 2]
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _taps(x: jax.Array, flip: bool = False) -> jax.Array:
  """[9, B, H, W, C]: x shifted by each offset of a 3x3 window, zero outside
  (the inputs a 'SAME' 3x3 convolution multiplies by its 9 kernel taps)."""
  _, h, w, _ = x.shape
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  offsets = [(i, j) for i in range(3) for j in range(3)]
  if flip:
    offsets = [(2 - i, 2 - j) for i, j in offsets]
  return jnp.stack([padded[:, i:i + h, j:j + w] for i, j in offsets])


@jax.custom_vjp
def conv3x3_one_channel(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """The 'SAME' 3x3 convolution of one-channel images, [B, H, W, 1] with a
  [3, 3, 1, F] kernel, as nine broadcast multiply-adds.

  The same function as `lax.conv_general_dilated`, computed the way XLA:CPU runs
  fastest: with one input channel, lax.conv's kernels have nothing to vectorize
  over. Its backward pass (below) is one [9, B*H*W] x [B*H*W, F] matrix product for
  the kernel. Timings: benchmarks/results/design_notes.md.
  """
  return sum(t * k for t, k in zip(_taps(x), kernel.reshape(9, 1, -1)))


def _conv3x3_one_channel_fwd(x, kernel):
  return conv3x3_one_channel(x, kernel), (x, kernel)


def _conv3x3_one_channel_bwd(residuals, g):
  x, kernel = residuals
  # Contracted over named axes, not reshaped: a batch sharded over devices then sums
  # locally and all-reduces, rather than being gathered.
  d_kernel = jnp.einsum('kbhwc,bhwf->kf', _taps(x), g).reshape(kernel.shape)
  # The transposed convolution; XLA drops it where nothing needs the images' gradient.
  d_x = jnp.einsum('kbhwf,kf->bhw', _taps(g, flip=True), kernel.reshape(9, -1))[..., None]
  return d_x.astype(x.dtype), d_kernel.astype(kernel.dtype)


conv3x3_one_channel.defvjp(_conv3x3_one_channel_fwd, _conv3x3_one_channel_bwd)


def apply_conv(conv: nnx.Conv, x: jax.Array) -> jax.Array:
  """`conv(x)`, through conv3x3_one_channel where the input has one channel."""
  if conv.in_features != 1:
    return conv(x)
  y = conv3x3_one_channel(x.astype(conv.dtype), conv.kernel[...].astype(conv.dtype))
  return y if conv.bias is None else y + conv.bias[...].astype(conv.dtype)


class CNN(nnx.Module):
  """Blocks of (conv3x3 [+ conv3x3]) -> [batch norm] -> ReLU -> 2x2 max-pool, then a dense head.

  `crop` pixels are first cut from each border of the 28x28 image: MNIST centres
  each digit's 20x20 box by its centre of mass, so the border is mostly blank, and
  every layer after it then works on fewer pixels (`fast`: 20x20, 1.86x the
  training images/s of 28x28, see configs/fast.py).
  """

  def __init__(self, features, convs_per_block, dense_features, dropout_rate,
               batch_norm, crop=0, *, dtype, rngs: nnx.Rngs):
    self.dtype = dtype
    self.crop = crop
    self.convs = nnx.List()
    self.norms = nnx.List()
    in_features = 1
    for out_features in features:
      for _ in range(convs_per_block):
        self.convs.append(nnx.Conv(
            in_features, out_features, kernel_size=(3, 3), dtype=dtype,
            use_bias=not batch_norm, rngs=rngs))
        self.norms.append(nnx.BatchNorm(out_features, momentum=0.9, dtype=dtype,
                                        rngs=rngs) if batch_norm else None)
        in_features = out_features
    self.convs_per_block = convs_per_block
    size = 28 - 2 * crop
    for _ in features:
      size //= 2
    self.dense = nnx.Linear(size * size * in_features, dense_features,
                            dtype=dtype, rngs=rngs)
    self.dropout = nnx.Dropout(dropout_rate)
    self.head = nnx.Linear(dense_features, NUM_CLASSES, dtype=dtype, rngs=rngs)

  def __call__(self, x, *, train: bool = False, key=None):
    x = x.astype(self.dtype)
    if self.crop:
      x = x[:, self.crop:-self.crop, self.crop:-self.crop]
    for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
      x = apply_conv(conv, x)
      if norm is not None:
        x = norm(x, use_running_average=not train)
      x = nnx.relu(x)
      if (i + 1) % self.convs_per_block == 0:
        x = max_pool_2x2(x)
    x = x.reshape(x.shape[0], -1)
    x = nnx.relu(self.dense(x))
    x = self.dropout(x, deterministic=not train, rngs=key)
    return self.head(x).astype(jnp.float32)


class NoPoolCNN(nnx.Module):
  """An et al. (2020): unpadded k x k convolutions, each with batch norm and ReLU,
  no pooling (each convolution takes k - 1 pixels off the image's side: ten 3x3,
  five 5x5 or four 7x7 leave 8x8, 8x8 or 4x4), then one dense layer to the ten
  logits with batch norm. Their three models (3x3, 5x5, 7x7 kernels) are
  configs/an2020.py.
  """

  def __init__(self, features, kernel_size, *, dtype, rngs: nnx.Rngs):
    self.dtype = dtype
    self.convs = nnx.List()
    self.norms = nnx.List()
    in_features = 1
    for out_features in features:
      self.convs.append(nnx.Conv(in_features, out_features, (kernel_size, kernel_size),
                                 padding='VALID', use_bias=False, dtype=dtype, rngs=rngs))
      self.norms.append(nnx.BatchNorm(out_features, momentum=0.9, dtype=dtype, rngs=rngs))
      in_features = out_features
    side = 28 - (kernel_size - 1) * len(features)
    self.head = nnx.Linear(side * side * in_features, NUM_CLASSES, use_bias=False,
                           dtype=dtype, rngs=rngs)
    self.head_norm = nnx.BatchNorm(NUM_CLASSES, momentum=0.9, dtype=dtype, rngs=rngs)

  def __call__(self, x, *, train: bool = False, key=None):
    del key  # No dropout.
    x = x.astype(self.dtype)
    for conv, norm in zip(self.convs, self.norms):
      x = nnx.relu(norm(conv(x), use_running_average=not train))
    x = self.head(x.reshape(x.shape[0], -1))
    return self.head_norm(x, use_running_average=not train).astype(jnp.float32)


class BranchingHVC(nnx.Module):
  """Byerly, Kalganova and Dear (2021), "No routing needed between capsules": unpadded
  3x3 convolutions with batch norm (a shift, no scale) and ReLU, and after every
  third one a branch to the ten classes.

  A branch reads its feature map as one capsule per pixel (the pixel's channels as
  the vector). Each class's capsule is the sum over pixels of the pixel's capsule
  times a weight vector of its own (element-wise: a homogeneous vector capsule, no
  routing), then batch norm and ReLU; the capsule's length is the branch's logit
  for that class. The branches' logits, times one learned weight per branch
  (starting at 1) and batch-normalized, are summed.
  """

  BRANCH_EVERY = 3  # Branches after the 3rd, 6th, 9th convolution (their MNIST model).

  def __init__(self, features, *, dtype, rngs: nnx.Rngs):
    self.dtype = dtype
    norm = lambda n: nnx.BatchNorm(n, use_scale=False, epsilon=1e-3, momentum=0.9,
                                   dtype=dtype, rngs=rngs)
    self.convs, self.norms = nnx.List(), nnx.List()
    self.capsule_weights, self.capsule_norms = nnx.List(), nnx.List()
    in_features, side = 1, 28
    for i, out_features in enumerate(features):
      self.convs.append(nnx.Conv(in_features, out_features, (3, 3), padding='VALID',
                                 use_bias=False, dtype=dtype, rngs=rngs))
      self.norms.append(norm(out_features))
      in_features, side = out_features, side - 2
      if (i + 1) % self.BRANCH_EVERY == 0:
        pixels = side * side
        self.capsule_weights.append(nnx.Param(jax.random.normal(
            rngs.params(), (NUM_CLASSES, pixels, out_features)) / jnp.sqrt(pixels)))
        self.capsule_norms.append(norm(out_features))
    if not len(self.capsule_weights):
      raise UserError(f'model=hvc needs at least {self.BRANCH_EVERY} conv_features: it '
                      f'branches after every {self.BRANCH_EVERY}rd convolution.')
    self.branch_weights = nnx.Param(jnp.ones(len(self.capsule_weights)))
    self.merge_norm = norm(len(self.capsule_weights))

  def __call__(self, x, *, train: bool = False, key=None):
    del key  # No dropout.
    x = x.astype(self.dtype)
    logits = []
    for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
      x = nnx.relu(norm(conv(x), use_running_average=not train))
      if (i + 1) % self.BRANCH_EVERY == 0:
        branch = len(logits)
        pixels = x.reshape(x.shape[0], 1, -1, x.shape[-1])  # [B, 1, pixels, channels]
        weights = self.capsule_weights[branch][...].astype(self.dtype)
        capsules = (pixels * weights).sum(axis=2)  # [B, classes, channels]
        capsules = nnx.relu(self.capsule_norms[branch](capsules, use_running_average=not train))
        # The length, kept differentiable where a capsule is all zeros.
        logits.append(jnp.sqrt(jnp.sum(jnp.square(capsules.astype(jnp.float32)), -1) + 1e-12))
    merged = jnp.stack(logits, -1) * self.branch_weights[...]  # [B, classes, branches]
    return self.merge_norm(merged, use_running_average=not train).sum(-1).astype(jnp.float32)


class MLP(nnx.Module):
  """Fully connected layers with ReLU and dropout."""

  def __init__(self, hidden, dropout_rate, *, dtype, rngs: nnx.Rngs):
    self.dtype = dtype
    sizes = [28 * 28, *hidden]
    self.layers = nnx.List(
        nnx.Linear(a, b, dtype=dtype, rngs=rngs) for a, b in zip(sizes, sizes[1:]))
    self.dropout = nnx.Dropout(dropout_rate)
    self.head = nnx.Linear(sizes[-1], NUM_CLASSES, dtype=dtype, rngs=rngs)

  def __call__(self, x, *, train: bool = False, key=None):
    x = x.reshape(x.shape[0], -1).astype(self.dtype)
    keys = (jax.random.split(key, len(self.layers)) if key is not None
            else [None] * len(self.layers))
    for layer, k in zip(self.layers, keys):
      x = self.dropout(nnx.relu(layer(x)), deterministic=not train, rngs=k)
    return self.head(x).astype(jnp.float32)


class FlaxExampleCNN(nnx.Module):
  """The official Flax `examples/mnist` CNN (its NNX version of 2026-01-13), for
  side-by-side comparisons.

  conv 3x3 (32) -> dropout -> batch norm -> ReLU -> 2x2 average pool -> conv 3x3
  (64) -> batch norm -> ReLU -> 2x2 average pool -> dense 256 -> dropout -> ReLU
  -> dense 10, with dropout 0.025 in both places.
  """

  def __init__(self, dropout_rate, *, dtype, rngs: nnx.Rngs):
    self.dtype = dtype
    self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), dtype=dtype, rngs=rngs)
    self.norm1 = nnx.BatchNorm(32, dtype=dtype, rngs=rngs)
    self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), dtype=dtype, rngs=rngs)
    self.norm2 = nnx.BatchNorm(64, dtype=dtype, rngs=rngs)
    self.dense = nnx.Linear(7 * 7 * 64, 256, dtype=dtype, rngs=rngs)
    self.dropout = nnx.Dropout(dropout_rate)
    self.head = nnx.Linear(256, NUM_CLASSES, dtype=dtype, rngs=rngs)

  def __call__(self, x, *, train: bool = False, key=None):
    keys = jax.random.split(key) if key is not None else (None, None)
    pool = lambda y: y.reshape(y.shape[0], y.shape[1] // 2, 2, y.shape[2] // 2, 2,
                               y.shape[3]).mean(axis=(2, 4))
    x = self.dropout(self.conv1(x.astype(self.dtype)), deterministic=not train, rngs=keys[0])
    x = pool(nnx.relu(self.norm1(x, use_running_average=not train)))
    x = pool(nnx.relu(self.norm2(self.conv2(x), use_running_average=not train)))
    x = self.dense(x.reshape(x.shape[0], -1))
    x = nnx.relu(self.dropout(x, deterministic=not train, rngs=keys[1]))
    return self.head(x).astype(jnp.float32)


MODELS = ('cnn', 'mlp', 'flax_example_cnn', 'nopool', 'hvc')

# The config fields that define a model: all that create_model reads.
MODEL_FIELDS = ('model', 'conv_features', 'convs_per_block', 'dense_features', 'batch_norm',
                'input_crop', 'kernel_size', 'hidden_features', 'dropout_rate', 'compute_dtype')


def model_config(config: ml_collections.ConfigDict) -> ml_collections.FrozenConfigDict:
  """The config's MODEL_FIELDS, hashable: equal for configs of the same model."""
  return ml_collections.FrozenConfigDict({k: config[k] for k in MODEL_FIELDS})


def create_model(config: ml_collections.ConfigDict, seed: int | jax.Array) -> nnx.Module:
  """Builds the model named by `config.model`, initialized from `seed` (an int or a key)."""
  config = model_config(config)  # Reading any other field fails.
  rngs = nnx.Rngs(params=seed)
  dtype = jnp.dtype(config.compute_dtype)
  if config.model == 'cnn':
    return CNN(tuple(config.conv_features), config.convs_per_block,
               config.dense_features, config.dropout_rate, config.batch_norm,
               config.input_crop, dtype=dtype, rngs=rngs)
  if config.model == 'mlp':
    return MLP(tuple(config.hidden_features), config.dropout_rate,
               dtype=dtype, rngs=rngs)
  if config.model == 'flax_example_cnn':
    return FlaxExampleCNN(config.dropout_rate, dtype=dtype, rngs=rngs)
  if config.model == 'nopool':
    return NoPoolCNN(tuple(config.conv_features), config.kernel_size, dtype=dtype, rngs=rngs)
  if config.model == 'hvc':
    return BranchingHVC(tuple(config.conv_features), dtype=dtype, rngs=rngs)
  raise UserError(f'Unknown model {config.model!r}; choose one of {MODELS}.')
