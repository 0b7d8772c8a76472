"""The long-context node environment: the transcript in `context`, chunks for children, and judging.

A root node holds the whole transcript in its interpreter variable `context` (never in its prompt) and
is asked one question; its goal states the cast, and its variable `question` holds the question alone
(a child's `question` is its goal). `launch_subagent(goal, context=chunk)` starts a
child whose `context` is `chunk` (any str; the parent decides the split and states the return format
in `goal`). Children see only their own goal and chunk.

Success:
  - the root: `scoring.score_answer` of its finish message against the gold answer (Oolong's rules);
  - a child: if its goal is a sub-goal (`questions.SubGoal.parse`), 1 iff its finish value is that
    sub-goal's exact answer on the events whose lines its chunk holds (`Campaign.events_in`,
    `scoring.sub_goal_success`), else 0; any other goal cannot be graded and scores 0.
The paper's λ = 0.4 delegation bonus is a trainer setting (`policy_update.advantage.bonus_weight`).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from rao_jax.envs.base import JSONLike, PromptParts
from rao_jax.envs.long_context import scoring
from rao_jax.envs.long_context.questions import Question, SubGoal
from rao_jax.envs.long_context.sessions import SPELLS, Campaign, SessionConfig, cached_campaign
from rao_jax.envs.tool_safety import show as _show

MAX_GOAL_CHARS = 1000
ENV_NAME = "long_context"

_RULES = """\
The variable `context` holds a tabletop game transcript (too long to print whole): lines of table \
talk, episode markers `=== Episode i ===`, dice rolls ("natural 20" is said as such) and spell casts. \
A cast without a level is at the spell's base level; base levels: {levels}.
The root answers its question in \\boxed{{...}}: a number, a name, or a comma-separated list."""
_DELEGATION_RULES = """\
Split `context` into chunks that fit your window (by lines) and give each child one: \
`await launch_subagent(goal, context=chunk)`. State what to return in the goal (an int, a list, a \
dict); children that read disjoint chunks are independent, so run them together with asyncio.gather."""
_TOOL_DOCS = """\
context: str, the text to read.
question: str, the question of your goal (without the cast).
launch_subagent(goal: str, context: str = "") -> the child's finish value; the child's `context` is the given text.
finish(answer): ends the episode with answer (the root: "\\boxed{...}")."""


class LongContextNode:
  """One node: the root (`question` set) or a child asked `goal` about its `context` chunk."""

  def __init__(self, campaign: Campaign, context: str, goal: str, *, question: Question | None = None,
               gold: str | None = None, max_context_chars: int | None = None):
    self.campaign = campaign
    self.context = context
    self.goal = goal
    self.question = question
    self.gold = gold
    self.sub_goal = None if question is not None else SubGoal.parse(goal)
    self.max_context_chars = max_context_chars or max(len(campaign.text), 1)

  def prompt_parts(self, delegation: bool) -> PromptParts:
    levels = ", ".join(f"{spell} {level}" for spell, level in SPELLS.items())
    return PromptParts(rules=_RULES.format(levels=levels),
                       delegation_rules=_DELEGATION_RULES if delegation else "",
                       goal=self.goal, tool_docs=_TOOL_DOCS)

  def tools(self) -> dict[str, Callable[..., Any]]:
    return {}

  def namespace_variables(self) -> dict[str, JSONLike]:
    return {"context": self.context, "question": self.question_text}

  @property
  def question_text(self) -> str:
    """The question this node answers, without the cast: the root's question, or a child's goal."""
    return self.question.text() if self.question is not None else self.goal

  def fork(self, goal: object = None, context: object = "", *args: Any, **kwargs: Any) -> "LongContextNode | str":
    """`launch_subagent(goal, context=chunk)` (or `(goal, chunk)`); an error string for any other arguments."""
    if args or kwargs:
      extra = [_show(a) for a in args] + sorted(str(k)[:40] for k in kwargs)
      return f"Error: launch_subagent takes (goal: str, context: str = ''), got extra arguments {extra}"
    if type(goal) is not str or not goal.strip():
      return f"Error: launch_subagent's goal must be a non-empty str, got {_show(goal)}"
    if len(goal) > MAX_GOAL_CHARS:
      return f"Error: launch_subagent's goal is {len(goal)} characters; at most {MAX_GOAL_CHARS}"
    if type(context) is not str:
      return f"Error: launch_subagent's context must be a str (a chunk of text), got {_show(context)}"
    if len(context) > self.max_context_chars:
      return (f"Error: launch_subagent's context is {len(context)} characters; at most "
              f"{self.max_context_chars} (the whole transcript)")
    return LongContextNode(self.campaign, context, goal.strip(), max_context_chars=self.max_context_chars)

  def judge(self, finish_value: JSONLike) -> float:
    if self.question is not None:
      return scoring.score_answer(self.gold, finish_value)
    if self.sub_goal is None:
      return 0.0
    return scoring.sub_goal_success(self.sub_goal.answer(self.campaign.events_in(self.context)), finish_value)


def root_goal(campaign: Campaign, question: Question) -> str:
  """The root's goal: the cast, then the question."""
  return f"Cast: {campaign.cast_text()}. {question.text()}"


def make_root_environment(env_config: Mapping[str, Any], task: Mapping[str, Any]) -> LongContextNode:
  """The root node of `task` ({"seed", "num_episodes", "question", "answer", ...}) in the world of
  `env_config` ({"session": SessionConfig fields})."""
  if set(env_config) != {"session"}:
    raise ValueError(f"the long-context env_config is {{'session': {{...}}}}, got keys {sorted(env_config)}")
  session = SessionConfig(**env_config["session"])
  missing = {"seed", "num_episodes", "question", "answer"} - set(task)
  if missing:
    raise ValueError(f"a long-context task needs {sorted(missing)}")
  campaign = cached_campaign(session, str(task["seed"]), int(task["num_episodes"]))
  question = Question.from_dict(dict(task["question"]))
  return LongContextNode(campaign, campaign.text, root_goal(campaign, question), question=question,
                         gold=str(task["answer"]))

