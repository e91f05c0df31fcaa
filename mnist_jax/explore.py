"""`--mode=explore`: what the data looks like before any training.

Writes `explore/stats.json` (split sizes, class counts, pixel statistics, shape
and dtype) and three pictures: sample digits, class counts per split and the
mean image of each class.
"""

import json
import os

from absl import logging
import numpy as np

from mnist_jax import input_pipeline, plots


def split_stats(split: input_pipeline.Split, class_names) -> dict:
  """Statistics of one split; pixels as fractions of 255."""
  counts = np.bincount(split.labels, minlength=len(class_names))
  return {
      'size': len(split),
      'image_shape': list(split.images.shape[1:]),
      'dtype': str(split.images.dtype),
      'class_counts': {name: int(c) for name, c in zip(class_names, counts)},
      # Accumulated in float64 without a float copy of the whole split.
      'pixel_mean': round(float(split.images.mean(dtype=np.float64)) / 255, 4),
      'pixel_std': round(float(split.images.std(dtype=np.float64)) / 255, 4),
      'empty_pixel_fraction': round(float((split.images == 0).mean()), 4),
      'pixel_min': int(split.images.min()),
      'pixel_max': int(split.images.max()),
  }


def explore(config, workdir: str, data=None) -> dict:
  """Computes and writes the statistics and pictures; returns the statistics."""
  if data is None:
    data = input_pipeline.load(config.dataset, config.data_dir, config.manual_dir)
  names = input_pipeline.CLASS_NAMES[config.dataset]
  out = os.path.join(workdir, 'explore')
  os.makedirs(out, exist_ok=True)
  stats = {'dataset': config.dataset, 'class_names': list(names),
           'splits': {s: split_stats(split, names) for s, split in data.items()}}
  with open(os.path.join(out, 'stats.json'), 'w') as f:
    json.dump(stats, f, indent=2)

  train = data['train']
  rng = np.random.default_rng(config.seed)
  # Four examples of every class, chosen at random but reproducibly.
  picks = np.concatenate([rng.choice(np.flatnonzero(train.labels == c), 4, replace=False)
                          for c in range(len(names)) if np.any(train.labels == c)])
  plots.image_grid(train.images[picks], [names[l] for l in train.labels[picks]],
                   os.path.join(out, 'samples.png'), f'{config.dataset}: training samples',
                   columns=8)
  plots.class_histograms({s: list(v['class_counts'].values())
                          for s, v in stats['splits'].items()}, names,
                         os.path.join(out, 'class_histogram.png'))
  means = np.stack([train.images[train.labels == c].mean(axis=0) if np.any(train.labels == c)
                    else np.zeros(train.images.shape[1:]) for c in range(len(names))])
  plots.image_grid(means, list(names), os.path.join(out, 'class_means.png'),
                   f'{config.dataset}: mean image of each class', columns=len(names))
  for split, s in stats['splits'].items():
    logging.info('%s: %d images %s %s, pixel mean %.4f std %.4f, %.1f%% empty pixels',
                 split, s['size'], 'x'.join(map(str, s['image_shape'])), s['dtype'],
                 s['pixel_mean'], s['pixel_std'], 100 * s['empty_pixel_fraction'])
  logging.info('Wrote %s (stats.json, samples.png, class_histogram.png, class_means.png)', out)
  return stats
