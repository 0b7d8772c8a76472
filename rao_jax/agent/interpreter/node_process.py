"""One node's process: its interpreter state and nothing else.

Forked by the fork server (`forkserver.py`) with the sandbox already imported, hardened
(`os_limits.Hardening.apply`), then `serve` talks to the pool over one socket. It reads a
`messages.NodeStart` (namespace variables, tool names, limits), answers `NodeReady`, and then serves
one activation at a time (`RunCell` or `ResumeCell`, answered by a `CellReply`). There is no
environment here: a tool or `launch_subagent` call is a message to the pool (`RemoteHost`), and the
process blocks until the pool answers. The pool enforces the activation's wall-clock deadline from
outside (it kills this process); the CPU timer here only turns an honest slow cell into a
`TimeoutError` observation, so the node can go on.
"""
from __future__ import annotations

import collections
import gc
import os
from collections.abc import Callable
from typing import Any

from rao_jax.agent.interpreter import cell
from rao_jax.agent.interpreter import messages
from rao_jax.agent.interpreter import protocol
from rao_jax.agent.interpreter import time_limit
from rao_jax.agent.interpreter.messages import CellReply, CellStatus
from rao_jax.envs.base import JSONLike


class PoolGone(BaseException):
  """The pool closed the socket or broke the protocol: the process ends (not catchable by cells)."""


class Channel:
  """The node's end of its socket: whole messages in (one read per arrival), frames out."""

  def __init__(self, fd: int):
    self._fd = fd
    self._reader = protocol.FrameReader()
    self._pending: collections.deque = collections.deque()

  def send(self, message) -> None:
    protocol.write_bytes(self._fd, protocol.encode(message.to_wire()))

  def receive(self) -> Any:
    """The next message's JSON (blocking), or None when the pool has closed the socket."""
    while not self._pending:
      data = os.read(self._fd, 1 << 16)
      if not data:
        return None
      self._pending.extend(self._reader.feed(data))
    return self._pending.popleft()


class RemoteHost:
  """`cell.NodeHost` over the socket: each call is one message out and one answer in."""

  def __init__(self, channel: Channel):
    self._channel = channel

  def _call(self, message, answer_type: type):
    self._channel.send(message)
    frame = self._channel.receive()
    if frame is None:
      raise PoolGone("the pool closed the connection")
    answer = messages.to_node_from_wire(frame)
    if not isinstance(answer, answer_type):
      raise PoolGone(f"expected {answer_type.__name__}, got {type(answer).__name__}")
    return answer

  def call_tool(self, name: str, args: list, kwargs: dict) -> JSONLike:
    return self._call(messages.ToolCall(name, tuple(args), kwargs), messages.ToolResult).value

  def launch(self, args: list, kwargs: dict) -> int | str:
    result = self._call(messages.LaunchCall(tuple(args), kwargs), messages.LaunchResult)
    return result.error if result.error is not None else result.child


class NodeServer:
  """Runs one node's activations under the CPU-time limit and collects its cyclic garbage."""

  def __init__(self, start: messages.NodeStart, host: cell.NodeHost):
    self._time_limit_s = start.cell_time_limit_s
    self._timer = time_limit.CpuTimeLimit()
    self.node = cell.NodeRuntime(
        start.depth, host, variables=dict(start.variables), tool_names=start.tools,
        delegation=start.limits.delegation, max_depth=start.limits.max_depth,
        max_output_chars=start.max_output_chars, time_limit_s=start.cell_time_limit_s)

  def handle(self, request: messages.ToNode) -> CellReply:
    if isinstance(request, messages.RunCell):
      return self._activate(lambda node: node.run_cell(request.code))
    if isinstance(request, messages.ResumeCell):
      return self._activate(lambda node: node.resume(dict(request.deliveries)))
    raise PoolGone(f"unexpected {type(request).__name__} between activations")

  def _activate(self, step: Callable[[cell.NodeRuntime], cell.Outcome]) -> CellReply:
    node = self.node
    if node.finished:
      return CellReply(CellStatus.ERROR, "Error: this node has already finished")
    try:
      try:
        with self._timer.limit(self._time_limit_s):
          outcome = step(node)
      except time_limit.CellTimeout:
        outcome = node.timeout_outcome()
      if self._timer.expired and outcome.status is CellStatus.OUTPUT:
        # The budget ran out where the cell swallowed the interruption (a finalizer, say).
        outcome = node.timeout_outcome()
    except (RuntimeError, KeyError) as error:
      return CellReply(CellStatus.ERROR, f"Error: {type(error).__name__}: {error}")
    finally:
      self._collect()
    return CellReply(outcome.status, outcome.text,
                     outcome.finish_value if outcome.status is CellStatus.FINISHED else None)

  def _collect(self) -> None:
    """Collects the cell's cyclic garbage; finalizers run under the time limit."""
    try:
      with self._timer.limit(self._time_limit_s):
        gc.collect()
    except time_limit.CellTimeout:
      pass


def serve(fd: int, sandbox: dict[str, str]) -> int:
  """Serves the node on socket `fd` until the pool closes it; the process's exit code."""
  channel = Channel(fd)
  try:
    frame = channel.receive()
    if frame is None:
      return 0
    start = messages.to_node_from_wire(frame)
    if not isinstance(start, messages.NodeStart):
      return 2
    server = NodeServer(start, RemoteHost(channel))
    channel.send(messages.NodeReady(sandbox))
    while True:
      frame = channel.receive()
      if frame is None:  # The pool released the node.
        return 0
      channel.send(server.handle(messages.to_node_from_wire(frame)))
  except (PoolGone, protocol.ProtocolError, messages.WireError, OSError):
    return 2
