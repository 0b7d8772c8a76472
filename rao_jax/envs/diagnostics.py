"""Diagnostic environments whose best policy is known: does an RL pipeline move a policy toward reward?

Two registered environments, small enough that a 1-layer model learns them in seconds, used by the
tests that show RAO raising reward (tests/rl/test_rl_learns.py):

- "diagnostic_choice": one node, no tools. The goal is "Pick a word."; the node succeeds iff it calls
  `finish(word)` with the task's hidden `answer`. The best policy always finishes with the answer.
- "diagnostic_relay": a two-level task whose root cannot act on the world. The root's only tool is
  `launch_subagent(word)`; the child it starts ("Write red.") has `write()`, which writes the child's
  word on a board shared by the tree. The child succeeds iff it wrote; the root succeeds iff it finished
  and the board shows the task's hidden `answer`. So the root's success is decided by its child's work
  alone, and the root learns *what to delegate* only through its own advantage.

Tasks are JSON-like dicts {"answer": word} with a word from WORDS.

Each is also a complete environment suite (`ChoiceSuite`, `RelaySuite`; `rao_jax.envs.suite`), the
smallest example of how a benchmark plugs into the trainer: `configs/diagnostic.py` trains on them with
`python experiments/train.py --config configs/diagnostic.py:choice`. Their expert guesses: each
demonstration uses a word drawn uniformly (seeded), so a warm start picks the answer a quarter of the
time and RL has to find it from reward alone.
"""
from __future__ import annotations

import dataclasses
import random
from typing import Any, Callable, Mapping

from rao_jax.errors import FieldError
from rao_jax.envs.base import DemoNode, DemoTurn, JSONLike, PromptParts
from rao_jax.envs.suite import Suite

WORDS = ("red", "blue", "green", "gold")
CHOICE = "diagnostic_choice"
RELAY = "diagnostic_relay"


def _word(value: object) -> bool:
  return type(value) is str and value in WORDS


def _finished(finish_value: JSONLike) -> bool:
  return type(finish_value) is str and bool(finish_value.strip())


class ChoiceNode:
  """The node of a "diagnostic_choice" task."""

  def __init__(self, answer: str):
    self.answer = answer

  def prompt_parts(self, delegation: bool) -> PromptParts:
    del delegation  # nothing to delegate
    return PromptParts(rules="Pick a word.", delegation_rules="", goal="Pick a word.",
                       tool_docs="finish(message: str): end with your word.")

  def tools(self) -> dict[str, Callable[..., Any]]:
    return {}

  def namespace_variables(self) -> dict[str, JSONLike]:
    return {}

  def fork(self, *args: Any, **kwargs: Any) -> str:
    del args, kwargs
    return "Error: this task has no sub-tasks"

  def judge(self, finish_value: JSONLike) -> float:
    return 1.0 if finish_value == self.answer else 0.0


class RelayNode:
  """A node of a "diagnostic_relay" tree: the root (`word` None) or a child asked to write `word`."""

  def __init__(self, board: dict[str, str | None], answer: str, word: str | None = None):
    self._board = board
    self._answer = answer
    self._word = word

  @property
  def goal(self) -> str:
    return "Have the right word written." if self._word is None else f"Write {self._word}."

  def prompt_parts(self, delegation: bool) -> PromptParts:
    docs = ("launch_subagent(word: str): a sub-agent writes word." if self._word is None
            else "write(): write your word on the board.")
    return PromptParts(rules="Words go on a shared board.", delegation_rules="", goal=self.goal,
                       tool_docs=docs + "\nfinish(message: str): end.")

  def tools(self) -> dict[str, Callable[..., Any]]:
    if self._word is None:
      return {}  # the root can only delegate
    board, word = self._board, self._word

    def write():
      board["word"] = word
      return "written"

    return {"write": write}

  def namespace_variables(self) -> dict[str, JSONLike]:
    return {}

  def fork(self, word: object = None, *args: Any, **kwargs: Any) -> "RelayNode | str":
    if args or kwargs or not _word(word):
      return f"Error: launch_subagent takes one word of {list(WORDS)}"
    if self._word is not None:
      return "Error: only the root delegates"
    return RelayNode(self._board, self._answer, word)

  def judge(self, finish_value: JSONLike) -> float:
    wanted = self._answer if self._word is None else self._word
    return 1.0 if _finished(finish_value) and self._board["word"] == wanted else 0.0


def _answer(env_config: Mapping[str, Any], task: Mapping[str, Any]) -> str:
  if env_config:
    raise ValueError(f"the diagnostic environments take no env_config, got {dict(env_config)}")
  if not isinstance(task, Mapping) or set(task) != {"answer"} or not _word(task["answer"]):
    raise ValueError(f"a diagnostic task is {{'answer': one of {list(WORDS)}}}, got {task!r}")
  return task["answer"]


def make_choice_environment(env_config: Mapping[str, Any], task: Mapping[str, Any]) -> ChoiceNode:
  return ChoiceNode(_answer(env_config, task))


def make_relay_environment(env_config: Mapping[str, Any], task: Mapping[str, Any]) -> RelayNode:
  return RelayNode({"word": None}, _answer(env_config, task))


# ---------------------------------------------------------------------------------- suites


@dataclasses.dataclass(frozen=True)
class DiagnosticConfig:
  """Every task's hidden answer, and how many tasks a split holds (all alike)."""

  answer: str = "red"
  num_tasks: int = 64

  def __post_init__(self):
    if not _word(self.answer):
      raise FieldError("answer", self.answer, f"is not one of {list(WORDS)}")
    if self.num_tasks <= 0:
      raise FieldError("num_tasks", self.num_tasks, "must be positive")


@dataclasses.dataclass(frozen=True)
class DiagnosticTask:
  answer: str
  difficulty: str = "all"

  def to_dict(self) -> dict[str, str]:
    return {"answer": self.answer}


def _guess(variant: str | None) -> str:
  """The guessing expert's word for one demonstration copy (uniform over WORDS, seeded)."""
  return random.Random(f"diagnostic/{variant}").choice(WORDS)


def _cell(code: str) -> DemoTurn:
  return DemoTurn(thought="", code=code, output=None)


class _DiagnosticSuite(Suite):
  Config = DiagnosticConfig
  difficulties = ("all",)
  splits = ("train", "val")

  @property
  def env_config(self) -> dict[str, Any]:
    return {}  # the answer travels with each task

  def whole_words(self) -> tuple[str, ...]:
    return WORDS

  def load_tasks(self, split: str, data_dir: str) -> list[DiagnosticTask]:
    del data_dir  # generated in memory
    if split not in self.splits:
      raise ValueError(f"split {split!r} is not one of {self.splits}")
    return [DiagnosticTask(self.config.answer)] * self.config.num_tasks


class ChoiceSuite(_DiagnosticSuite):
  """"diagnostic_choice" tasks: finish with the hidden word."""

  env_name = CHOICE

  def demonstrations(self, task: DiagnosticTask, *, delegate: bool, max_depth: int, variant: str | None = None
                     ) -> list[DemoNode] | None:
    del delegate, max_depth  # one node; nothing to delegate
    return [DemoNode(goal="Pick a word.", depth=0, environment=ChoiceNode(task.answer),
                     turns=(_cell(f"finish({_guess(variant)!r})"),))]


class RelaySuite(_DiagnosticSuite):
  """"diagnostic_relay" tasks: the root must delegate the hidden word to a child that writes it."""

  env_name = RELAY

  def demonstrations(self, task: DiagnosticTask, *, delegate: bool, max_depth: int, variant: str | None = None
                     ) -> list[DemoNode] | None:
    if not delegate or max_depth < 1:
      return None  # the root cannot act on the board itself
    root = RelayNode({"word": None}, task.answer)
    word = _guess(variant)
    launch = DemoTurn(thought="", code=f"await launch_subagent({word!r})", output="'done'")
    child = root.fork(word)
    return [DemoNode(goal=root.goal, depth=0, environment=root, turns=(launch, _cell("finish('done')"))),
            DemoNode(goal=child.goal, depth=1, environment=child, turns=(_cell("write()\nfinish('done')"),))]
