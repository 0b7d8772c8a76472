"""Per-cell CPU-time limit inside a node process: a profiling timer that interrupts only cell code.

`ITIMER_PROF` fires after the cell's CPU budget and then every `REPEAT_S` seconds until stopped. The
handler raises `CellTimeout` only when the interrupted frame belongs to cell code (or to library
code a cell called directly); when the sandbox's own code or an environment tool (called through the
sandbox) is running, it does nothing and the next tick tries again, so shared state such as an
inventory is never left half-updated. The repetition defeats cells that swallow one exception
(`finally` blocks, generator finalizers). Code that never returns to the bytecode loop (a huge
C-level computation) is stopped by the pool's wall-clock deadline, which kills the node's process.
"""
from __future__ import annotations

import contextlib
import os
import signal
from typing import Iterator

from rao_jax.agent.interpreter import restrictions

REPEAT_S = 0.05
_SANDBOX_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class CellTimeout(BaseException):
  """Raised into cell code when its CPU budget is spent (not catchable as `Exception`)."""


class CpuTimeLimit:
  """Installs the SIGPROF handler; `limit(seconds)` bounds the CPU time of a block of cell work."""

  def __init__(self):
    self.expired = False
    signal.signal(signal.SIGPROF, self._on_tick)

  def _on_tick(self, signum, frame) -> None:
    del signum
    self.expired = True
    while frame is not None:
      filename = frame.f_code.co_filename
      if filename == restrictions.CELL_FILENAME:
        raise CellTimeout()
      if filename.startswith(_SANDBOX_DIR):
        return  # Sandbox or tool code in progress: retry at the next tick.
      frame = frame.f_back

  @contextlib.contextmanager
  def limit(self, seconds: float) -> Iterator[None]:
    self.expired = False
    signal.setitimer(signal.ITIMER_PROF, max(seconds, 1e-3), REPEAT_S)
    try:
      yield
    finally:
      signal.setitimer(signal.ITIMER_PROF, 0.0, 0.0)
