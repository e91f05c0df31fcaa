"""Seconds this process has spent tracing, lowering and compiling jitted programs.

Read from JAX's own monitoring events, so that the training clock can leave
compilation out while every program just compiles on its first call. Spans are
merged: a jitted function traced inside another's trace counts once.
"""

import threading

import jax

_EVENTS = frozenset({'/jax/core/compile/jaxpr_trace_duration',
                     '/jax/core/compile/jaxpr_to_mlir_module_duration',
                     '/jax/core/compile/backend_compile_duration'})
_lock = threading.Lock()
_spans: list[tuple[float, float]] = []  # Disjoint, in the order they ended.
_listening = False


def _on_span(event: str, start: float, end: float, **kwargs) -> None:
  del kwargs
  if event not in _EVENTS:
    return
  with _lock:
    # An enclosing span ends after the spans inside it: it replaces them.
    while _spans and _spans[-1][0] >= start:
      _spans.pop()
    if _spans and _spans[-1][1] > start:
      start = _spans[-1][1]
    if end > start:
      _spans.append((start, end))


def seconds() -> float:
  """Compilation seconds since the first call of this function in this process."""
  global _listening
  with _lock:
    if not _listening:
      jax.monitoring.register_event_time_span_listener(_on_span)
      _listening = True
    return sum(end - start for start, end in _spans)
