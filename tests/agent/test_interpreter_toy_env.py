"""A tiny counting environment for the interpreter tests (imported by the worker processes too).

Every node of a tree shares one `points` counter. A node's goal is to gain `target` points since it
started; `add(n)` adds points, `points()` reads them. Children are launched with
`launch_subagent(target, context="")`.
"""
from __future__ import annotations

from rao_jax.envs import registry
from rao_jax.envs.base import PromptParts

TOY_ENV = "interpreter_toy"


class ToyEnvironment:

  def __init__(self, shared: dict, target: int, context: str = ""):
    self._shared = shared
    self._target = target
    self._context = context
    self._start = shared["points"]

  def prompt_parts(self, delegation: bool) -> PromptParts:
    rules = "Gain points." + (" You may delegate." if delegation else "")
    return PromptParts(rules, "Children share the counter." if delegation else "",
                       f"Gain {self._target} points. {self._context}".strip(),
                       "add(n), points(), finish(message)")

  def tools(self):
    shared = self._shared

    def add(n):
      if type(n) is not int or n < 0:
        return "Error: n must be a non-negative int"
      shared["points"] += n
      return f"now {shared['points']}"

    def points():
      return shared["points"]

    def explode():
      raise RuntimeError("tool bug")

    return {"add": add, "points": points, "explode": explode}

  def namespace_variables(self):
    return {"context": self._context, "target": self._target}

  def fork(self, target=None, context=""):
    if type(target) is not int or target < 0:
      return "Error: target must be a non-negative int"
    return ToyEnvironment(self._shared, target, str(context))

  def judge(self, finish_value) -> float:
    gained = self._shared["points"] - self._start
    return float(bool(finish_value) and gained >= self._target)


def make_root_environment(env_config: dict, task: dict) -> ToyEnvironment:
  if "target" not in task:
    raise ValueError("task needs a target")
  return ToyEnvironment({"points": int(env_config.get("start", 0))}, int(task["target"]))


registry.register(TOY_ENV, make_root_environment)


def test_toy_environment_judges_points_gained_since_fork():
  root = make_root_environment({}, {"target": 2})
  root.tools()["add"](1)
  child = root.fork(3)
  child.tools()["add"](3)
  assert child.judge("done") == 1.0
  assert root.judge("done") == 1.0
  assert root.judge("") == 0.0
  assert isinstance(root.fork("x"), str)
