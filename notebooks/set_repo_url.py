"""Sets this project's repository address, for a fork: python notebooks/set_repo_url.py URL

pyproject.toml's [project.urls] Repository is where it is kept; this copies it into the
README's Open-in-Colab badge and the notebook's REPO_URL, which tests/test_notebook.py
checks agree with it.
"""

import os
import re
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = ('pyproject.toml', 'README.md', os.path.join('notebooks', 'colab_tpu.ipynb'))


def current() -> str:
  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    return tomllib.load(f)['project']['urls']['Repository']


def main(argv):
  if len(argv) != 2 or not re.fullmatch(r'https://github\.com/[\w.-]+/[\w.-]+', argv[1]):
    sys.exit(f'usage: python {argv[0]} https://github.com/OWNER/REPOSITORY')
  old, new = current(), argv[1]
  for name in FILES:
    path = os.path.join(ROOT, name)
    with open(path) as f:
      text = f.read()
    with open(path, 'w') as f:  # The badge holds the address without its scheme and host.
      f.write(text.replace(old, new).replace(old.removeprefix('https://github.com/'),
                                             new.removeprefix('https://github.com/')))
  print(f'Repository: {old} -> {new} in {", ".join(FILES)}')


if __name__ == '__main__':
  main(sys.argv)
