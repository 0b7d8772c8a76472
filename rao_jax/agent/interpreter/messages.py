"""The typed messages between the interpreter pool and its workers, and their JSON wire form.

Every frame (`protocol`) carries one message as a JSON object. Each message is a small frozen
dataclass with `to_wire()` (a JSON-able dict) and `from_wire(data)`, which checks the structure and
raises `WireError` naming the message and the field. Requests come from the trusted pool; replies
come from workers that run model-written code, so a malformed reply item decodes to a failure of
that item (`CellReply.malformed`, `RootReply.malformed`) rather than an exception.

    pool -> worker   InitRequest, then per batch CreateRequest | RunRequest | ResumeRequest | ReleaseRequest
    worker -> pool   InitReply, then per batch Reply (one RootReply or CellReply per requested item)
"""
from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from typing import Any, ClassVar, Union

from rao_jax.agent import delegation as delegation_rule
from rao_jax.envs.base import JSONLike, PromptParts


class WireError(ValueError):
  """A message does not have the structure its type requires."""


class CellStatus(enum.StrEnum):
  """How one cell activation ended (a `str`, so it serialises as its value; see `pool.CellResult`)."""

  OUTPUT = "output"
  ERROR = "error"
  FINISHED = "finished"
  SUSPENDED = "suspended"
  CRASHED = "crashed"


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


def _prompt_to_wire(prompt: PromptParts) -> dict[str, str]:
  return {field.name: getattr(prompt, field.name) for field in dataclasses.fields(PromptParts)}


def _prompt_from_wire(data: dict[str, Any], message: str) -> PromptParts:
  return PromptParts(**{field.name: _field(data, field.name, str, f"{message} prompt")
                        for field in dataclasses.fields(PromptParts)})


# -- start-up ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class WorkerSettings:
  """The part of `InterpreterConfig` a worker needs (see there)."""

  cell_time_limit_s: float
  memory_limit_mb: int
  max_output_chars: int
  env_modules: tuple[str, ...] = ()
  preload_environments: tuple[str, ...] = ()

  def to_wire(self) -> dict[str, Any]:
    return {"cell_time_limit_s": self.cell_time_limit_s, "memory_limit_mb": self.memory_limit_mb,
            "max_output_chars": self.max_output_chars, "env_modules": list(self.env_modules),
            "preload_environments": list(self.preload_environments)}

  @classmethod
  def from_wire(cls, data: Any) -> WorkerSettings:
    data = _object(data, "worker settings")
    return cls(cell_time_limit_s=float(_field(data, "cell_time_limit_s", float, "worker settings")),
               memory_limit_mb=_field(data, "memory_limit_mb", int, "worker settings"),
               max_output_chars=_field(data, "max_output_chars", int, "worker settings"),
               env_modules=_strings(data, "env_modules", "worker settings"),
               preload_environments=_strings(data, "preload_environments", "worker settings"))


@dataclasses.dataclass(frozen=True)
class InitRequest:
  """The first frame a worker reads: its settings, the pool's import path and its scratch directory."""

  settings: WorkerSettings
  sys_path: tuple[str, ...]
  scratch_dir: str

  def to_wire(self) -> dict[str, Any]:
    return {"settings": self.settings.to_wire(), "sys_path": list(self.sys_path),
            "scratch_dir": self.scratch_dir}

  @classmethod
  def from_wire(cls, data: Any) -> InitRequest:
    data = _object(data, "init request")
    return cls(settings=WorkerSettings.from_wire(_field(data, "settings", dict, "init request")),
               sys_path=_strings(data, "sys_path", "init request"),
               scratch_dir=_field(data, "scratch_dir", str, "init request"))


@dataclasses.dataclass(frozen=True)
class InitReply:
  """A worker's answer to `InitRequest`: the sandbox layers that took effect, or why it cannot start."""

  sandbox: Mapping[str, str] = dataclasses.field(default_factory=dict)
  error: str | None = None

  def to_wire(self) -> dict[str, Any]:
    if self.error is not None:
      return {"ready": False, "error": self.error}
    return {"ready": True, "sandbox": dict(self.sandbox)}

  @classmethod
  def from_wire(cls, data: Any) -> InitReply:
    data = _object(data, "init reply")
    if not _field(data, "ready", bool, "init reply"):
      return cls(error=_field(data, "error", str, "init reply"))
    sandbox = _field(data, "sandbox", dict, "init reply")
    return cls(sandbox={k: _check(v, str, "init reply", f"sandbox layer {k!r}")
                        for k, v in sandbox.items()})


# -- requests ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TreeLimits:
  """Delegation limits of the trees built by one `CreateRequest`, kept by the worker per node.

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
class RootSpec:
  """One root to build: a registered environment, its config and the task (JSON objects)."""

  env_name: str
  env_config: dict[str, JSONLike]
  task: dict[str, JSONLike]

  def to_wire(self) -> dict[str, Any]:
    return {"env_name": self.env_name, "env_config": self.env_config, "task": self.task}

  @classmethod
  def from_wire(cls, data: Any) -> RootSpec:
    data = _object(data, "root")
    return cls(_field(data, "env_name", str, "root"), _field(data, "env_config", dict, "root"),
               _field(data, "task", dict, "root"))


@dataclasses.dataclass(frozen=True)
class CreateRequest:
  """Build these roots (each the first node of a new tree) under `limits`; one `RootReply` each."""

  OP: ClassVar[str] = "create"
  roots: tuple[RootSpec, ...]
  limits: TreeLimits

  @property
  def num_replies(self) -> int:
    return len(self.roots)

  def to_wire(self) -> dict[str, Any]:
    return {"op": self.OP, "roots": [root.to_wire() for root in self.roots],
            "limits": self.limits.to_wire()}

  @classmethod
  def from_wire(cls, data: dict[str, Any]) -> CreateRequest:
    roots = _field(data, "roots", list, "create request")
    return cls(tuple(RootSpec.from_wire(root) for root in roots),
               TreeLimits.from_wire(_field(data, "limits", dict, "create request")))


@dataclasses.dataclass(frozen=True)
class RunItem:
  """Run `code` as the next cell of the node with worker key `key`."""

  key: int
  code: str

  def to_wire(self) -> dict[str, Any]:
    return {"key": self.key, "code": self.code}

  @classmethod
  def from_wire(cls, data: Any) -> RunItem:
    data = _object(data, "run item")
    return cls(_field(data, "key", int, "run item"), _field(data, "code", str, "run item"))


@dataclasses.dataclass(frozen=True)
class RunRequest:
  """Run one cell per node; one `CellReply` each."""

  OP: ClassVar[str] = "run"
  cells: tuple[RunItem, ...]

  @property
  def num_replies(self) -> int:
    return len(self.cells)

  def to_wire(self) -> dict[str, Any]:
    return {"op": self.OP, "cells": [item.to_wire() for item in self.cells]}

  @classmethod
  def from_wire(cls, data: dict[str, Any]) -> RunRequest:
    return cls(tuple(RunItem.from_wire(item) for item in _field(data, "cells", list, "run request")))


@dataclasses.dataclass(frozen=True)
class ResumeItem:
  """Deliver `(child key, finish value or error string)` pairs to the suspended node `key`."""

  key: int
  deliveries: tuple[tuple[int, JSONLike], ...]

  def to_wire(self) -> dict[str, Any]:
    return {"key": self.key, "deliveries": [[child, value] for child, value in self.deliveries]}

  @classmethod
  def from_wire(cls, data: Any) -> ResumeItem:
    data = _object(data, "resume item")
    deliveries = []
    for pair in _field(data, "deliveries", list, "resume item"):
      if type(pair) is not list or len(pair) != 2:
        raise WireError("resume item: every delivery must be a [child key, value] pair")
      deliveries.append((_check(pair[0], int, "resume item", "a delivery's child key"), pair[1]))
    return cls(_field(data, "key", int, "resume item"), tuple(deliveries))


@dataclasses.dataclass(frozen=True)
class ResumeRequest:
  """Resume suspended nodes with their children's results; one `CellReply` each."""

  OP: ClassVar[str] = "resume"
  items: tuple[ResumeItem, ...]

  @property
  def num_replies(self) -> int:
    return len(self.items)

  def to_wire(self) -> dict[str, Any]:
    return {"op": self.OP, "items": [item.to_wire() for item in self.items]}

  @classmethod
  def from_wire(cls, data: dict[str, Any]) -> ResumeRequest:
    return cls(tuple(ResumeItem.from_wire(item)
                     for item in _field(data, "items", list, "resume request")))


@dataclasses.dataclass(frozen=True)
class ReleaseRequest:
  """Drop these nodes' namespaces and environments; the reply has no items."""

  OP: ClassVar[str] = "release"
  keys: tuple[int, ...]

  @property
  def num_replies(self) -> int:
    return 0

  def to_wire(self) -> dict[str, Any]:
    return {"op": self.OP, "keys": list(self.keys)}

  @classmethod
  def from_wire(cls, data: dict[str, Any]) -> ReleaseRequest:
    keys = _field(data, "keys", list, "release request")
    return cls(tuple(_check(key, int, "release request", "every key") for key in keys))


Request = Union[CreateRequest, RunRequest, ResumeRequest, ReleaseRequest]
_REQUESTS: dict[str, type] = {kind.OP: kind for kind in (CreateRequest, RunRequest, ResumeRequest,
                                                        ReleaseRequest)}


def request_from_wire(data: Any) -> Request:
  """The batch request encoded in `data`, by its "op" field."""
  data = _object(data, "request")
  op = _field(data, "op", str, "request")
  if op not in _REQUESTS:
    raise WireError(f"request: unknown op {op!r}")
  return _REQUESTS[op].from_wire(data)


# -- replies ----------------------------------------------------------------------------------

def _malformed_text(error: WireError) -> str:
  return f"Error: malformed interpreter reply ({error})"


@dataclasses.dataclass(frozen=True)
class RootReply:
  """A worker's answer for one root: its node key and prompt, or why it could not be built."""

  key: int | None = None
  prompt: PromptParts | None = None
  error: str | None = None

  def to_wire(self) -> dict[str, Any]:
    if self.error is not None:
      return {"error": self.error}
    return {"key": self.key, "prompt": _prompt_to_wire(self.prompt)}

  @classmethod
  def from_wire(cls, data: Any) -> RootReply:
    data = _object(data, "root reply")
    if "error" in data:
      return cls(error=_field(data, "error", str, "root reply"))
    return cls(_field(data, "key", int, "root reply"),
               _prompt_from_wire(_field(data, "prompt", dict, "root reply"), "root reply"))

  @classmethod
  def malformed(cls, error: WireError) -> RootReply:
    """What a malformed item stands for: a root that could not be built."""
    return cls(error=_malformed_text(error))


@dataclasses.dataclass(frozen=True)
class ChildSpawned:
  """A child node started by `launch_subagent` in the worker: its key, depth and prompt."""

  key: int
  depth: int
  prompt: PromptParts

  def to_wire(self) -> dict[str, Any]:
    return {"key": self.key, "depth": self.depth, "prompt": _prompt_to_wire(self.prompt)}

  @classmethod
  def from_wire(cls, data: Any) -> ChildSpawned:
    data = _object(data, "spawn")
    return cls(_field(data, "key", int, "spawn"), _field(data, "depth", int, "spawn"),
               _prompt_from_wire(_field(data, "prompt", dict, "spawn"), "spawn"))


@dataclasses.dataclass(frozen=True)
class CellReply:
  """What one cell activation produced in the worker (see `pool.CellResult` for the statuses).

  `finish_value` and `success` are set only when finished, `spawns` only when suspended.
  """

  status: CellStatus
  text: str
  finish_value: JSONLike = None
  success: float = 0.0
  spawns: tuple[ChildSpawned, ...] = ()

  def to_wire(self) -> dict[str, Any]:
    wire: dict[str, Any] = {"status": self.status.value, "text": self.text}
    if self.status is CellStatus.FINISHED:
      wire.update(finish_value=self.finish_value, success=self.success)
    if self.spawns:
      wire["spawns"] = [spawn.to_wire() for spawn in self.spawns]
    return wire

  @classmethod
  def from_wire(cls, data: Any) -> CellReply:
    data = _object(data, "cell reply")
    status = _field(data, "status", str, "cell reply")
    if status not in {member.value for member in CellStatus}:
      raise WireError(f"cell reply: unknown status {status!r}")
    status = CellStatus(status)
    text = _field(data, "text", str, "cell reply")
    if status is CellStatus.FINISHED:
      success = float(_field(data, "success", float, "cell reply"))
      if not 0.0 <= success <= 1.0:
        raise WireError(f"cell reply: success must lie in [0, 1], got {success}")
      if "finish_value" not in data:
        raise WireError("cell reply: missing field 'finish_value'")
      return cls(status, text, data["finish_value"], success)
    spawns = tuple(ChildSpawned.from_wire(s) for s in _field(data, "spawns", list, "cell reply")) if (
        "spawns" in data) else ()
    if spawns and status is not CellStatus.SUSPENDED:
      raise WireError(f"cell reply: only a suspended reply carries spawns, not {status.value!r}")
    return cls(status, text, spawns=spawns)

  @classmethod
  def malformed(cls, error: WireError) -> CellReply:
    """What a malformed item stands for: a node whose interpreter state can no longer be trusted."""
    return cls(CellStatus.CRASHED, _malformed_text(error))


ReplyItem = Union[RootReply, CellReply]


@dataclasses.dataclass(frozen=True)
class Reply:
  """A worker's answer to one batch request: one item per requested item, in order."""

  items: tuple[ReplyItem, ...]

  def to_wire(self) -> dict[str, Any]:
    return {"items": [item.to_wire() for item in self.items]}

  @classmethod
  def from_wire(cls, data: Any, request: Request) -> Reply:
    """Decodes the reply to `request`: `RootReply` items for a create, `CellReply` items otherwise.

    Raises WireError if the frame itself is malformed (not an object, no item list, a wrong count);
    a malformed item becomes `item_type.malformed(...)`, a failure of that item alone.
    """
    items = _field(_object(data, "reply"), "items", list, "reply")
    if len(items) != request.num_replies:
      raise WireError(f"reply: {len(items)} items for a request of {request.num_replies}")
    item_type = RootReply if isinstance(request, CreateRequest) else CellReply
    return cls(tuple(_item_from_wire(item_type, item) for item in items))


def _item_from_wire(item_type: type[RootReply] | type[CellReply], data: Any) -> ReplyItem:
  try:
    return item_type.from_wire(data)
  except WireError as error:
    return item_type.malformed(error)
