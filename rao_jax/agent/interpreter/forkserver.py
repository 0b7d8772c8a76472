"""The fork server: a process with the sandbox preloaded that forks one hardened process per node.

Started by the pool as `python -m rao_jax.agent.interpreter.forkserver CONTROL_FD SETTINGS_JSON`
(never forked from the trainer, so no JAX state, threads or secrets are inherited). It imports
everything a node needs, prepares the OS layers once (`os_limits.Hardening`), and then answers each
`spawn` datagram on its control socket (a SOCK_SEQPACKET pair with the pool) by forking:

* the child closes everything but its end of a fresh socket pair, sends stderr to /dev/null,
  hardens itself (limits, privilege drop, seccomp) and serves its node (`node_process.serve`);
* the server sends the pool the other end of the pair and, where the kernel has them, a pidfd of
  the child (SCM_RIGHTS), with `{"pid": pid}`.

So the pool talks to every node directly and can kill it (pidfd, no pid-reuse race). Children are
reaped by the kernel (SIGCHLD ignored). A node start costs one fork and one `seccomp_load`.
"""
from __future__ import annotations

import gc
import json
import os
import signal
import socket
import sys
import unicodedata  # noqa: F401 - `ast.parse` imports it lazily for non-ASCII names.
import warnings

from rao_jax.agent.interpreter import cell
from rao_jax.agent.interpreter import node_process
from rao_jax.agent.interpreter import os_limits

SPAWN = b"spawn"


class _NoHost:
  """A host for the warm-up node: no tools, no launches."""

  def call_tool(self, name: str, args: list, kwargs: dict) -> str:
    return "Error: no tools during warm-up"

  def launch(self, args: list, kwargs: dict) -> str:
    return "Error: no launches during warm-up"


_WARM_UP_CELLS = (
    "import math, json, re, collections, itertools, functools, random, string, statistics, heapq, "
    "bisect, copy, typing, asyncio",
    "café = 1\nx = [i for i in range(3)]\nprint(f'{x!r:>10}', re.findall(r'\\w+', 'a b'))",
    "async def f():\n  return 1\nr = await asyncio.gather(f())\nfinish(r)",
)


def _warm_up() -> None:
  """Runs a few cells in a throw-away node, so every lazy import happens before any fork.

  After the privilege drop a node may be unable to read Python's own files (a private install), and
  after seccomp it cannot open files for writing (byte-code caches), so nothing may be imported late.
  """
  node = cell.NodeRuntime(0, _NoHost(), variables={}, tool_names=(), delegation=True, max_depth=1,
                          max_output_chars=1000, time_limit_s=10.0)
  for source in _WARM_UP_CELLS:
    outcome = node.run_cell(source)
    if outcome.status is cell.CellStatus.ERROR:
      raise RuntimeError(f"the sandbox failed its warm-up cell {source!r}: {outcome.text}")


def _child(control: socket.socket, ours: socket.socket, theirs: socket.socket,
           hardening: os_limits.Hardening) -> int:
  control.close()
  ours.close()
  signal.signal(signal.SIGCHLD, signal.SIG_DFL)
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  os.close(devnull)
  report = hardening.apply()
  return node_process.serve(theirs.detach(), report)


def _spawn(control: socket.socket, hardening: os_limits.Hardening) -> None:
  ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
  pid = os.fork()
  if pid == 0:
    code = 1
    try:
      code = _child(control, ours, theirs, hardening)
    finally:
      os._exit(code)
  theirs.close()
  fds = [ours.fileno()]
  pidfd = -1
  try:
    pidfd = os.pidfd_open(pid)
    fds.append(pidfd)
  except (AttributeError, OSError):  # No pidfds here (old kernel, not Linux): the pool uses the pid.
    pass
  try:
    socket.send_fds(control, [json.dumps({"pid": pid}).encode()], fds)
  finally:
    ours.close()
    if pidfd >= 0:
      os.close(pidfd)


def main(argv: list[str]) -> int:
  control = socket.socket(fileno=int(argv[1]))
  settings = json.loads(argv[2])
  hardening = os_limits.Hardening(settings["memory_limit_mb"], settings["cpu_limit_s"])
  _warm_up()
  sys.set_int_max_str_digits(4300)
  sys.unraisablehook = lambda unraisable: None
  warnings.simplefilter("ignore")
  os.chdir(settings["scratch_dir"])
  signal.signal(signal.SIGCHLD, signal.SIG_IGN)
  gc.disable()  # Node processes collect explicitly, under their time limit, after every activation.
  gc.freeze()  # Preloaded objects stay out of the children's collections (fewer copied pages).
  control.send(b"ready")
  while True:
    try:
      request = control.recv(64)
    except InterruptedError:
      continue
    except OSError:  # The pool went away with spawns still unanswered.
      return 0
    if not request:  # The pool closed the control socket.
      return 0
    if request == SPAWN:
      try:
        _spawn(control, hardening)
      except OSError:  # The pool went away while we answered (the child is killed by the pool
        return 0       # or exits when its socket closes).


if __name__ == "__main__":
  sys.exit(main(sys.argv))
