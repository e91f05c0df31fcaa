"""mnist_jax: handwritten-digit recognition in JAX and Flax NNX."""
