"""The typed messages between the trusted pool and a node process, and their JSON wire form.

Every frame (`protocol`) carries one message as a JSON object with an "op" field. Each message is a
small frozen dataclass with `to_wire()` (a JSON-able dict) and `from_wire(data)`, which checks the
structure and raises `WireError` naming the message and the field.

A node process holds one node's interpreter state and nothing else. It runs model-written code, so
everything it sends is untrusted: the pool decodes it with `node_message_from_wire`, and any
malformed or unexpected message ends that node as crashed. Tools and launches are calls *out of* the
node: the node sends `ToolCall` / `LaunchCall` in the middle of a cell and blocks until the pool,
which holds the environment, answers with `ToolResult` / `LaunchResult`.

    pool -> node   NodeStart (once), then per activation RunCell | ResumeCell,
                   and ToolResult | LaunchResult answering the node's calls
    node -> pool   NodeReady (once), then per activation any number of ToolCall | LaunchCall,
                   ending with one CellReply
"""
from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from typing import Any, ClassVar, Union

from rao_jax.agent import delegation as delegation_rule
from rao_jax.envs.base import JSONLike


class WireError(ValueError):
  """A message does not have the structure its type requires."""


class CellStatus(enum.StrEnum):
  """How one cell activation ended (a `str`, so it serialises as its value; see `pool.CellResult`)."""

  OUTPUT = "output"
  ERROR = "error"
  FINISHED = "finished"
  SUSPENDED = "suspended"
  CRASHED = "crashed"  # the pool's verdict on a node; never sent by a node


# -- decoding helpers -----------------------------------------------------------------------------

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
               list: "a list", dict: "an object"}


def _object(data: Any, message: str) -> dict[str, Any]:
  if type(data) is not dict:
    raise WireError(f"{message}: expected a JSON object, got {type(data).__name__}")
  return data


def _has_type(value: Any, kind: type) -> bool:
  """Exact JSON types: a bool is not an integer; an integer is a number."""
  if kind is float:
    return type(value) in (int, float) and math.isfinite(value)
  return type(value) is kind


def _check(value: Any, kind: type, message: str, name: str) -> Any:
  if not _has_type(value, kind):
    raise WireError(f"{message}: {name} must be {_TYPE_NAMES[kind]}, got {type(value).__name__}")
  return value


def _field(data: dict[str, Any], name: str, kind: type, message: str) -> Any:
  """`data[name]`, checked to be of JSON type `kind`."""
  if name not in data:
    raise WireError(f"{message}: missing field {name!r}")
  return _check(data[name], kind, message, f"field {name!r}")


def _strings(data: dict[str, Any], name: str, message: str) -> tuple[str, ...]:
  values = _field(data, name, list, message)
  return tuple(_check(v, str, message, f"every item of {name!r}") for v in values)


def _present(data: dict[str, Any], name: str, message: str) -> Any:
  """`data[name]`, of any JSON type (a JSON-like value)."""
  if name not in data:
    raise WireError(f"{message}: missing field {name!r}")
  return data[name]


def _str_keyed(data: dict[str, Any], name: str, message: str) -> dict[str, Any]:
  """A JSON object field (whose keys JSON already made strings)."""
  return _field(data, name, dict, message)


# -- the node's start ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TreeLimits:
  """Delegation limits of the trees built by one `create_roots` call, inherited by every node.

  Attributes:
    max_depth: depth of the deepest node that may launch children is `max_depth - 1` (root = 0); a
      launch from a node at `max_depth` returns a refusal string and spawns nothing.
    delegation: False for the linear baseline: no `launch_subagent` in the namespace.
  """

  max_depth: int
  delegation: bool

  def __post_init__(self):
    if type(self.max_depth) is not int or self.max_depth < 0:
      raise ValueError(f"max_depth must be an int >= 0, got {self.max_depth!r}")
    if type(self.delegation) is not bool:
      raise ValueError(f"delegation must be a bool, got {self.delegation!r}")

  def may_delegate(self, depth: int) -> bool:
    """Whether a node at `depth` may launch children (`rao_jax.agent.delegation.may_delegate`)."""
    return delegation_rule.may_delegate(self.delegation, self.max_depth, depth)

  def to_wire(self) -> dict[str, Any]:
    return {"max_depth": self.max_depth, "delegation": self.delegation}

  @classmethod
  def from_wire(cls, data: Any) -> TreeLimits:
    data = _object(data, "tree limits")
    max_depth = _field(data, "max_depth", int, "tree limits")
    if max_depth < 0:
      raise WireError(f"tree limits: max_depth must be >= 0, got {max_depth}")
    return cls(max_depth, _field(data, "delegation", bool, "tree limits"))


@dataclasses.dataclass(frozen=True)
class NodeStart:
  """The first frame a node process reads: what its namespace holds and how its cells are limited.

  `variables` are the environment's namespace variables as plain data, `tools` the names of its
  tools (each becomes a stub that sends a `ToolCall`).
  """

  OP: ClassVar[str] = "start"
  depth: int
  limits: TreeLimits
  cell_time_limit_s: float
  max_output_chars: int
  variables: Mapping[str, JSONLike]
  tools: tuple[str, ...]

  def to_wire(self) -> dict[str, Any]:
    return {"op": self.OP, "depth": self.depth, "limits": self.limits.to_wire(),
            "cell_time_limit_s": self.cell_time_limit_s, "max_output_chars": self.max_output_chars,
            "variables": dict(self.variables), "tools": list(self.tools)}

  @classmethod
  def from_wire(cls, data: dict[str, Any]) -> NodeStart:
    m = "node start"
    return cls(_field(data, "depth", int, m), TreeLimits.from_wire(_field(data, "limits", dict, m)),
               float(_field(data, "cell_time_limit_s", float, m)),
               _field(data, "max_output_chars", int, m), _str_keyed(data, "variables", m),
               _strings(data, "tools", m))


@dataclasses.dataclass(frozen=True)
class NodeReady:
  """A node process's answer to `NodeStart`: the OS sandbox layers that took effect."""

  OP: ClassVar[str] = "ready"
  sandbox: Mapping[str, str]

  def to_wire(self) -> dict[str, Any]:
    return {"op": self.OP, "sandbox": dict(self.sandbox)}

  @classmethod
  def from_wire(cls, data: dict[str, Any]) -> NodeReady:
    sandbox = _field(data, "sandbox", dict, "node ready")
    return cls({k: _check(v, str, "node ready", f"sandbox layer {k!r}") for k, v in sandbox.items()})


# -- activations ----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RunCell:
  """Run `code` as the node's next cell."""

  OP: ClassVar[str] = "run"
  code: str

  def to_wire(self) -> dict[str, Any]:
    return {"op": self.OP, "code": self.code}

  @classmethod
  def from_wire(cls, data: dict[str, Any]) -> RunCell:
    return cls(_field(data, "code", str, "run cell"))


@dataclasses.dataclass(frozen=True)
class ResumeCell:
  """Deliver `(child id, finish value or error string)` pairs to the suspended node."""

  OP: ClassVar[str] = "resume"
  deliveries: tuple[tuple[int, JSONLike], ...]

  def to_wire(self) -> dict[str, Any]:
    return {"op": self.OP, "deliveries": [[child, value] for child, value in self.deliveries]}

  @classmethod
  def from_wire(cls, data: dict[str, Any]) -> ResumeCell:
    deliveries = []
    for pair in _field(data, "deliveries", list, "resume cell"):
      if type(pair) is not list or len(pair) != 2:
        raise WireError("resume cell: every delivery must be a [child id, value] pair")
      deliveries.append((_check(pair[0], int, "resume cell", "a delivery's child id"), pair[1]))
    return cls(tuple(deliveries))


@dataclasses.dataclass(frozen=True)
class ToolCall:
  """A cell called the environment tool `name`; the node waits for a `ToolResult`."""

  OP: ClassVar[str] = "tool"
  name: str
  args: tuple[JSONLike, ...]
  kwargs: Mapping[str, JSONLike]

  def to_wire(self) -> dict[str, Any]:
    return {"op": self.OP, "name": self.name, "args": list(self.args), "kwargs": dict(self.kwargs)}

  @classmethod
  def from_wire(cls, data: dict[str, Any]) -> ToolCall:
    m = "tool call"
    return cls(_field(data, "name", str, m), tuple(_field(data, "args", list, m)),
               _str_keyed(data, "kwargs", m))


@dataclasses.dataclass(frozen=True)
class ToolResult:
  """The tool's return value (plain data; a tool error is an error string)."""

  OP: ClassVar[str] = "tool_result"
  value: JSONLike

  def to_wire(self) -> dict[str, Any]:
    return {"op": self.OP, "value": self.value}

  @classmethod
  def from_wire(cls, data: dict[str, Any]) -> ToolResult:
    return cls(_present(data, "value", "tool result"))

  @classmethod
  def wire_from_json(cls, value_json: str) -> str:
    """The JSON text of a `ToolResult` whose value is already encoded as `value_json`."""
    return f'{{"op":"{cls.OP}","value":{value_json}}}'


@dataclasses.dataclass(frozen=True)
class LaunchCall:
  """A cell started `launch_subagent(*args, **kwargs)`; the node waits for a `LaunchResult`."""

  OP: ClassVar[str] = "launch"
  args: tuple[JSONLike, ...]
  kwargs: Mapping[str, JSONLike]

  def to_wire(self) -> dict[str, Any]:
    return {"op": self.OP, "args": list(self.args), "kwargs": dict(self.kwargs)}

  @classmethod
  def from_wire(cls, data: dict[str, Any]) -> LaunchCall:
    return cls(tuple(_field(data, "args", list, "launch call")),
               _str_keyed(data, "kwargs", "launch call"))


@dataclasses.dataclass(frozen=True)
class LaunchResult:
  """The child's id, or the error string the launch resolves to at once (a refusal)."""

  OP: ClassVar[str] = "launch_result"
  child: int | None = None
  error: str | None = None

  def to_wire(self) -> dict[str, Any]:
    return {"op": self.OP, "error": self.error} if self.error is not None else {
        "op": self.OP, "child": self.child}

  @classmethod
  def from_wire(cls, data: dict[str, Any]) -> LaunchResult:
    if "error" in data:
      return cls(error=_field(data, "error", str, "launch result"))
    return cls(child=_field(data, "child", int, "launch result"))


@dataclasses.dataclass(frozen=True)
class CellReply:
  """How one activation ended in the node (see `pool.CellResult` for the statuses).

  `finish_value` is set only when finished. The node reports neither its children (the pool logged
  its launches) nor a success (the pool's environment judges the finish value).
  """

  OP: ClassVar[str] = "reply"
  status: CellStatus
  text: str
  finish_value: JSONLike = None

  def to_wire(self) -> dict[str, Any]:
    wire: dict[str, Any] = {"op": self.OP, "status": self.status.value, "text": self.text}
    if self.status is CellStatus.FINISHED:
      wire["finish_value"] = self.finish_value
    return wire

  @classmethod
  def from_wire(cls, data: dict[str, Any]) -> CellReply:
    status = _field(data, "status", str, "cell reply")
    allowed = {member.value for member in CellStatus} - {CellStatus.CRASHED.value}
    if status not in allowed:
      raise WireError(f"cell reply: unknown status {status!r}")
    status = CellStatus(status)
    text = _field(data, "text", str, "cell reply")
    if status is CellStatus.FINISHED:
      return cls(status, text, _present(data, "finish_value", "cell reply"))
    return cls(status, text)


ToNode = Union[NodeStart, RunCell, ResumeCell, ToolResult, LaunchResult]
FromNode = Union[NodeReady, ToolCall, LaunchCall, CellReply]
_TO_NODE: dict[str, type] = {kind.OP: kind for kind in (NodeStart, RunCell, ResumeCell, ToolResult,
                                                       LaunchResult)}
_FROM_NODE: dict[str, type] = {kind.OP: kind for kind in (NodeReady, ToolCall, LaunchCall, CellReply)}


def _decode(data: Any, kinds: dict[str, type], what: str) -> Any:
  data = _object(data, what)
  op = _field(data, "op", str, what)
  if op not in kinds:
    raise WireError(f"{what}: unknown op {op!r}")
  return kinds[op].from_wire(data)


def to_node_from_wire(data: Any) -> ToNode:
  """A message the pool sent to a node (decoded in the node process)."""
  return _decode(data, _TO_NODE, "message to a node")


def node_message_from_wire(data: Any) -> FromNode:
  """A message a node process sent (decoded by the pool; untrusted)."""
  return _decode(data, _FROM_NODE, "message from a node")
