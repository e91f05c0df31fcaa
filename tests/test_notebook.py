"""notebooks/colab_tpu.ipynb runs top to bottom, shrunk to seconds on the CPU."""

import os
import re
import sys

import nbclient
import nbformat

from conftest import ROOT


def test_colab_notebook_runs_top_to_bottom(mnist_dirs, tmp_path, monkeypatch):
  notebook = nbformat.read(os.path.join(ROOT, 'notebooks', 'colab_tpu.ipynb'), as_version=4)
  workdir = tmp_path / 'run'
  for name, value in (('SMOKE', '1'), ('MANUAL_DIR', mnist_dirs[0]),
                      ('DATA_DIR', mnist_dirs[1]), ('WORKDIR', str(workdir))):
    monkeypatch.setenv(f'MNIST_JAX_NOTEBOOK_{name}' if name == 'SMOKE' else f'MNIST_JAX_{name}',
                       value)
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  # Raises CellExecutionError, with the cell and its traceback, if any cell fails.
  nbclient.NotebookClient(notebook, timeout=600, kernel_name='python3', resources={
      'metadata': {'path': os.path.join(ROOT, 'notebooks')}}).execute()

  text = '\n'.join(output.get('text', '') for cell in notebook.cells if cell.cell_type == 'code'
                   for output in cell.outputs)
  assert re.search(r'test accuracy \d+\.\d\d% after', text), text[-3000:]
  assert re.search(r'drawn_digit\.png: \d \(\d+% sure\)', text), text[-3000:]
  images = [output for cell in notebook.cells if cell.cell_type == 'code'
            for output in cell.outputs if 'image/png' in output.get('data', {})]
  assert len(images) == 5  # Samples, curves, confusion matrix, mistakes, the digit.
  for name in ('checkpoints', 'metrics.jsonl', 'eval/confusion_matrix.png'):
    assert (workdir / name).exists()


def test_the_repository_address_is_set_in_one_place():
  """pyproject.toml's Repository is what the README's Colab badge opens and what the
  notebook clones; set_repo_url.py changes all three."""
  sys.path.insert(0, os.path.join(ROOT, 'notebooks'))
  import set_repo_url  # pylint: disable=g-import-not-at-top
  url = set_repo_url.current()
  owner_repo = url.removeprefix('https://github.com/')
  readme = open(os.path.join(ROOT, 'README.md')).read()
  assert (f'(https://colab.research.google.com/github/{owner_repo}/blob/main/notebooks/'
          'colab_tpu.ipynb)') in readme
  notebook = open(os.path.join(ROOT, 'notebooks', 'colab_tpu.ipynb')).read()
  assert f"os.environ.get('MNIST_JAX_REPO_URL', '{url}')" in notebook
