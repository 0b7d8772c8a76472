"""The trusted side of one node: its environment, its tools, delegation and the judge.

An `EnvironmentHost` lives in the pool's process, never in a node process. A node's cell reaches it
only through messages (`messages.ToolCall`, `messages.LaunchCall`) carrying plain data, and its
answers are plain data too. So the environment's state (TextCraft's shared inventory), the effects
of its tools and the judge that scores a finish value are out of reach of model-written code: a cell
that escaped every language-level restriction can still only *call* the tools, as an honest cell can.

Everything a node sends has been JSON-decoded (exact builtin types), so cell-defined classes never
reach environment code; tools must still validate their arguments (`NodeEnvironment.tools`).
"""
from __future__ import annotations

import dataclasses
import json
import math

from rao_jax.agent import delegation as delegation_rule
from rao_jax.agent.interpreter import values
from rao_jax.agent.interpreter.messages import TreeLimits
from rao_jax.envs import registry
from rao_jax.envs.base import JSONLike, NodeEnvironment, PromptParts

# Largest tool result or namespace variable handed to a node, as JSON text (a long-context
# `context` variable included); larger results are replaced by an error string.
MAX_VALUE_CHARS = 8_000_000


def _clean_prompt(prompt: PromptParts) -> PromptParts:
  return PromptParts(*(values.clean_text(str(getattr(prompt, field.name)))
                       for field in dataclasses.fields(PromptParts)))


def _error(what: str, error: Exception) -> str:
  return values.clean_text(f"Error: {what} failed: {type(error).__name__}: {error}")


class EnvironmentHost:
  """One node's environment as the pool serves it to the node's (untrusted) process.

  Attributes:
    depth: the node's depth (root = 0).
    limits: the delegation limits of its tree.
    prompt: the environment's prompt parts for this node (delegation advice only where a launch
      would be accepted), with text made UTF-8 safe.
  """

  def __init__(self, env: NodeEnvironment, depth: int, limits: TreeLimits):
    self.env = env
    self.depth = depth
    self.limits = limits
    self.prompt = _clean_prompt(env.prompt_parts(limits.may_delegate(depth)))
    self._tools = dict(env.tools())

  @classmethod
  def root(cls, env_name: str, env_config: dict, task: dict,
           limits: TreeLimits) -> "EnvironmentHost | str":
    """A root's host, or an error string if the environment cannot be built for this task."""
    try:
      return cls(registry.make_root_environment(env_name, env_config, task), 0, limits)
    except Exception as error:  # A bad task or environment costs this root only.
      return values.clean_text(
          f"Error: could not create the environment: {type(error).__name__}: {error}")

  def tool_names(self) -> tuple[str, ...]:
    return tuple(self._tools)

  def variables(self) -> dict[str, JSONLike]:
    """The environment's namespace variables as JSON-like data (raises if they are not)."""
    return values.json_like(dict(self.env.namespace_variables()), MAX_VALUE_CHARS)

  def call_tool_json(self, name: str, args: list, kwargs: dict) -> str:
    """Runs tool `name`; the JSON text of its result, or of an error string. Never raises.

    The result is encoded once, here (tuples become lists); a result that is not JSON data (or is
    larger than `MAX_VALUE_CHARS` as JSON) is sent as its `str`.
    """
    tool = self._tools.get(name)
    if tool is None:
      return json.dumps(f"Error: there is no tool named {name!r}")
    try:
      result = tool(*args, **kwargs)
    except Exception as error:  # Tools should return errors; an exception becomes one.
      return json.dumps(_error(name, error))
    try:
      text = json.dumps(result, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
      text = None
    if text is None or len(text) > MAX_VALUE_CHARS:
      return json.dumps(values.clean_text(str(result))[:MAX_VALUE_CHARS])
    return text

  def launch(self, args: list, kwargs: dict) -> "EnvironmentHost | str":
    """The child of `launch_subagent(*args, **kwargs)`, or the error string the launch resolves to."""
    if not self.limits.may_delegate(self.depth):
      return delegation_rule.refusal(self.depth)
    try:
      child_env = self.env.fork(*args, **kwargs)
    except Exception as error:  # fork must not raise; if it does, the parent gets an error string.
      return _error("launch_subagent", error)
    if isinstance(child_env, str):
      return values.clean_text(child_env)
    try:
      return EnvironmentHost(child_env, self.depth + 1, self.limits)
    except Exception as error:  # An environment bug costs this launch only.
      return _error("launch_subagent", error)

  def judge(self, finish_value: JSONLike) -> float:
    """The node's success for `finish(finish_value)`, as the environment judges it.

    A judge that raises scores 0. A non-finite or out-of-range score is passed on unchanged, so the
    trainer skips the batch and logs it (`train/skipped_bad_reward`) instead of learning from it.
    """
    try:
      success = float(self.env.judge(finish_value))
    except Exception:
      return 0.0
    return success if math.isfinite(success) else math.nan
