"""What a figure was measured on: the CPU's name, generation and vector extensions.

The same config trains 2-3x faster on one 2-core x86 machine than on another
(AVX-512 or not, the core's generation), so every benchmark records this.
"""

import os
import platform

# The extensions XLA:CPU's float32/bfloat16 kernels use, widest last.
VECTOR_FLAGS = ('avx2', 'fma', 'avx512f', 'avx512_bf16', 'avx512_fp16', 'amx_tile')


def cpu() -> dict:
  """{'model', 'family', 'model_number', 'cores', 'vector_extensions'} from /proc/cpuinfo."""
  info = {}
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        key, _, value = line.partition(':')
        info.setdefault(key.strip(), value.strip())
  except OSError:
    pass
  flags = info.get('flags', '').split()
  return {'model': info.get('model name', platform.processor()),
          'family': info.get('cpu family'), 'model_number': info.get('model'),
          'cores': os.cpu_count(),
          'vector_extensions': [f for f in VECTOR_FLAGS if f in flags]}


def describe() -> str:
  """One line for logs and READMEs, e.g. 'Intel(R) Xeon(R) Processor (family 6 model 207; ...)'."""
  c = cpu()
  return (f'{c["cores"]}-core {c["model"]} (family {c["family"]} model {c["model_number"]}; '
          f'{", ".join(c["vector_extensions"]) or "no AVX2"})')


if __name__ == '__main__':
  print(describe())
