"""The pictures: digits, class counts, confusion matrix, mistakes, calibration, curves.

Each function writes one PNG and returns its path. matplotlib runs headless.
"""

import os
from typing import Sequence

import matplotlib
import matplotlib.ticker

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  fig.savefig(path, dpi=100, bbox_inches='tight')
  plt.close(fig)
  return path


def image_grid(images: np.ndarray, titles: Sequence[str], path: str, suptitle: str,
               columns: int = 10, title_colors: Sequence[str] | None = None) -> str:
  """A grid of greyscale images [N, 28, 28(, 1)], each with a title."""
  rows = max(1, -(-len(images) // columns))
  # Constrained layout keeps the titles of one row, the images of the next and the
  # figure's title apart.
  fig, axes = plt.subplots(rows, columns, figsize=(1.3 * columns, 1.6 * rows + 0.4),
                           squeeze=False, layout='constrained')
  for i, ax in enumerate(axes.flat):
    ax.axis('off')
    if i < len(images):
      ax.imshow(np.squeeze(images[i]), cmap='gray', vmin=0, vmax=255)
      ax.set_title(titles[i], fontsize=8,
                   color=title_colors[i] if title_colors else 'black')
  fig.suptitle(suptitle)
  return _save(fig, path)


def class_histograms(counts: dict[str, Sequence[int]], class_names: Sequence[str],
                     path: str) -> str:
  """One bar chart of examples per class for each split."""
  fig, axes = plt.subplots(1, len(counts), figsize=(6 * len(counts), 4), squeeze=False)
  for ax, (split, values) in zip(axes.flat, counts.items()):
    ax.bar(range(len(values)), values, color='tab:blue')
    ax.set_xticks(range(len(values)), class_names, rotation=45 if len(class_names[0]) > 2 else 0,
                  ha='right' if len(class_names[0]) > 2 else 'center')
    ax.set_title(f'{split}: {sum(values):,} images')
    ax.set_ylabel('images')
  return _save(fig, path)


def confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: str) -> str:
  """Counts per (true, predicted) class, log-coloured so rare confusions show."""
  fig, ax = plt.subplots(figsize=(7, 6))
  ax.imshow(np.log1p(matrix), cmap='Blues')
  for (t, p), v in np.ndenumerate(matrix):
    ax.text(p, t, str(v), ha='center', va='center', fontsize=7,
            color='white' if t == p else ('black' if v else 'lightgrey'))
  ticks = range(len(class_names))
  ax.set_xticks(ticks, class_names, rotation=45, ha='right')
  ax.set_yticks(ticks, class_names)
  ax.set_xlabel('predicted')
  ax.set_ylabel('true')
  ax.set_title(f'Confusion matrix ({matrix.sum():,} test images, '
               f'{matrix.sum() - np.trace(matrix)} errors)')
  return _save(fig, path)


RELIABLE_BIN = 50  # Images a confidence bin needs before its accuracy means much.


def reliability_diagram(bin_confidence, bin_accuracy, bin_counts, ece: float, path: str) -> str:
  """Accuracy against confidence per bin; the diagonal is perfect calibration. Bins
  of fewer than RELIABLE_BIN images are drawn faint: their accuracy is mostly noise."""
  edges = np.linspace(0, 1, len(bin_counts) + 1)
  centers = (edges[:-1] + edges[1:]) / 2
  fig, (ax, ax_count) = plt.subplots(2, 1, figsize=(5, 6), sharex=True,
                                     gridspec_kw={'height_ratios': [3, 1]})
  counts, accuracy = np.asarray(bin_counts), np.asarray(bin_accuracy)
  confidence = np.asarray(bin_confidence)
  for rows, alpha, label in ((counts >= RELIABLE_BIN, 1.0, 'accuracy in the bin'),
                             ((counts > 0) & (counts < RELIABLE_BIN), 0.25,
                              f'(bins of < {RELIABLE_BIN} images)')):
    if rows.any():
      ax.bar(centers[rows], accuracy[rows], width=edges[1] - edges[0], edgecolor='black',
             alpha=alpha, color='tab:blue', label=label)
  ax.plot([0, 1], [0, 1], 'k--', label='perfect calibration')
  solid = counts >= RELIABLE_BIN
  ax.plot(confidence[solid], accuracy[solid], 'o', color='tab:red',
          label='accuracy at the bin\'s mean confidence')
  ax.set_ylabel('accuracy')
  ax.set_title(f'Reliability diagram (ECE {ece:.4f})')
  ax.legend(loc='upper left', fontsize=8)
  ax_count.bar(centers, bin_counts, width=edges[1] - edges[0], color='grey')
  ax_count.set_yscale('log')
  ax_count.set_xlabel('confidence')
  ax_count.set_ylabel('images')
  return _save(fig, path)


def training_curves(metrics: Sequence[dict], path: str) -> str:
  """Loss and error rate per epoch: train, validation (where held out) and test."""
  epochs = [m['epoch'] for m in metrics]
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
  for split, style in (('train', 'o-'), ('val', '^-'), ('test', 's-')):
    if f'{split}_loss' not in metrics[0]:
      continue
    ax_loss.plot(epochs, [m[f'{split}_loss'] for m in metrics], style, label=split)
    ax_acc.plot(epochs, [100 * (1 - m[f'{split}_accuracy']) for m in metrics], style,
                label=split)
  # Both on log scales, labelled in plain numbers: from 1% error down to 0.5% is as
  # visible as from 10% to 5%, which a linear 80-100% accuracy axis squashed.
  ax_loss.set_title('loss (log scale)')
  ax_acc.set_title('error (%, log scale)')
  for ax in (ax_loss, ax_acc):
    ax.set_yscale('log')
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter('%g'))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel('epoch')
    ax.legend()
    ax.grid(alpha=0.3, which='both')
  return _save(fig, path)


def sweep(rows: Sequence[dict], metric: str, path: str) -> str:
  """Each configuration of a sweep: its mean validation figure against its mean
  wall time, with the standard deviation over seeds as error bars, numbered by rank."""
  fig, ax = plt.subplots(figsize=(8, 5))
  scale = 100 if metric.endswith('accuracy') else 1
  for row in rows:
    if not row['seeds_done']:
      continue
    wall, value = row['wall_s'], row[metric]
    pruned = row['state'] != 'COMPLETE'
    ax.errorbar(wall['mean'], scale * value['mean'], xerr=wall['std'] or None,
                yerr=scale * value['std'] or None, fmt='x' if pruned else 'o',
                color='grey' if pruned else 'C0', capsize=3)
    ax.annotate(str(row['rank']), (wall['mean'], scale * value['mean']),
                textcoords='offset points', xytext=(5, 5), fontsize=8)
  ax.set_xlabel('wall time per run (s), mean over seeds')
  ax.set_ylabel(f'{metric.replace("_", " ")}{" (%)" if scale == 100 else ""}, mean over seeds')
  ax.set_title('Sweep: each configuration by rank (grey x: pruned, its seeds so far)')
  ax.grid(alpha=0.3)
  return _save(fig, path)
