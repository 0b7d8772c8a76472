"""Keep freed host memory mapped, so that XLA:CPU stops faulting every execution's temporaries in afresh.

Why. XLA:CPU allocates each execution's temporary buffer (activations and gradients in flight: about
1 GB for a `tiny` train step of 8 × 512 tokens) with `posix_memalign`, from the malloc arena of the
thread that runs the execution. That is one of glibc's thread arenas, whose heaps are capped at 64 MB, so
glibc serves the buffer from a fresh `mmap` and unmaps it on free. The next execution then touches every
page of its temporaries for the first time again: a minor page fault, with the kernel zeroing the page,
per 4 KiB. Measured on the 2-core VM (`python scripts/bench_host_memory.py`, docs/performance.md): about
290,000 faults and 0.7 s of kernel time per `tiny` 8 × 512 train step, a sixth of the step's CPU time.

What. `retain_freed_host_memory()` sets glibc's malloc parameters (`mallopt`) so that:
  M_ARENA_MAX = 1         every thread allocates from the main arena, which grows with brk, not mmap;
  M_MMAP_MAX = 0          no allocation, however large, gets its own mapping;
  M_TRIM_THRESHOLD = -1   freed memory at the top of the heap is never given back to the kernel;
  M_TOP_PAD = 64 MiB      the heap grows in large steps.
A freed temporary buffer then stays mapped and the next execution reuses its pages with no fault.

When. First thing in a process, before JAX's first computation: glibc binds a thread to an arena the
first time it allocates, and fixes its arena limit then. Setting the same parameters only around a loop
of train steps was tried and dropped: a toy program's 128 MiB temporary still faulted on some runs. With
the process-wide settings that program still faults in full on some calls, irregularly (0 to 5 of 14
calls in eight runs, tests/test_host_memory.py), and the benched train steps on none. Entry points
(`experiments/train.py`, the benches, tests/conftest.py) call it first thing; it acts only when the
environment asks for it.

Costs, measured: it is not free, so it is off unless asked for (RAO_JAX_HOST_MALLOC=retain).
  - The process keeps its peak heap resident until it exits.
  - The rollout's decode gets slower. `bench_decode` (tiny, 64 rows) made 7.5x more context switches
    with it, which points to XLA's threads contending for the one malloc lock. The one-arena setting
    alone measured neutral, though, so the cause is not established. The main job's decode took 20%
    longer (238 s against 198 s). Its SFT warm start took 19% less (149 s against 185 s), and its wall
    clock was the same (722 s against 726 s; docs/performance.md, "Host page faults"). No result
    changes: both runs made the same trees.
So it pays for train-step-heavy processes (SFT, `bench_train`), not for rollouts.

Off glibc (macOS, musl) it is a no-op. Accelerator memory is not affected: only host (CPU) buffers are.
"""
from __future__ import annotations

import ctypes
import os
import platform
import warnings

ENV_VAR = "RAO_JAX_HOST_MALLOC"
CHOICES = ("system", "retain")

# glibc's mallopt parameter numbers (<malloc.h>).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

SETTINGS: tuple[tuple[str, int, int], ...] = (
    ("M_ARENA_MAX", _M_ARENA_MAX, 1),
    ("M_MMAP_MAX", _M_MMAP_MAX, 0),
    ("M_TRIM_THRESHOLD", _M_TRIM_THRESHOLD, -1),
    ("M_TOP_PAD", _M_TOP_PAD, 64 << 20),
)

_retained = False


def host_malloc_choice() -> str:
  """The allocator policy the environment asks for: "system" (glibc's defaults, the default) or "retain"."""
  choice = os.environ.get(ENV_VAR, "system").strip().lower() or "system"
  if choice not in CHOICES:
    raise ValueError(f"{ENV_VAR}={os.environ[ENV_VAR]!r}: expected one of {CHOICES}")
  return choice


def _backend_started() -> bool:
  """Whether a JAX backend already exists (its threads may be bound to their own arenas)."""
  try:
    from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel
    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):  # a JAX without this (private) query: assume not started
    return False


def retain_freed_host_memory() -> bool:
  """Applies the malloc settings above once per process. Returns True when they are in force.

  Returns False, changing nothing, unless RAO_JAX_HOST_MALLOC=retain and the C library is glibc.
  Raises ValueError when RAO_JAX_HOST_MALLOC is neither "system" nor "retain", and RuntimeError if glibc refuses a
  setting. Warns, and still applies them, when a JAX backend has already started.
  """
  global _retained
  choice = host_malloc_choice()
  if _retained:
    return True
  if choice == "system" or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
    return False
  if _backend_started():
    warnings.warn("retain_freed_host_memory() called after JAX's backend started: its threads keep "
                  "their own malloc arenas, so their large buffers are still mapped afresh each "
                  "execution. Call it before the first JAX computation.", RuntimeWarning, stacklevel=2)
  libc = ctypes.CDLL("libc.so.6")
  for name, parameter, value in SETTINGS:
    if libc.mallopt(ctypes.c_int(parameter), ctypes.c_int(value)) != 1:
      raise RuntimeError(f"glibc refused mallopt({name}, {value})")
  _retained = True
  return True
