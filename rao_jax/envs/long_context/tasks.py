"""Long-context tasks: one question about one generated campaign of 1, 2 or 3 episodes.

The three difficulties are the input sizes of Oolong-Real's buckets ("episodes_1" .. "episodes_3").
Splits are disjoint campaigns: every task of split s, bucket n, index k is generated from the seed
"{seed}/{s}/{n}/{k}", so no campaign is shared between "train" and "val".
"""
from __future__ import annotations

import dataclasses
import random
from typing import Any

from rao_jax.errors import FieldError
from rao_jax.envs.long_context import questions as questions_lib
from rao_jax.envs.long_context.sessions import ROLL_TYPES, SessionConfig, cached_campaign

DIFFICULTIES = ("episodes_1", "episodes_2", "episodes_3")
SPLITS = ("train", "val")


def num_episodes(difficulty: str) -> int:
  if difficulty not in DIFFICULTIES:
    raise ValueError(f"unknown difficulty {difficulty!r}; known: {DIFFICULTIES}")
  return int(difficulty.rsplit("_", 1)[1])


@dataclasses.dataclass(frozen=True)
class Task:
  """One question: the campaign's seed and size, the question, and its gold answer as boxed text."""

  seed: str
  difficulty: str
  question: questions_lib.Question
  answer: str

  @property
  def num_episodes(self) -> int:
    return num_episodes(self.difficulty)

  def to_dict(self) -> dict[str, Any]:
    return {"seed": self.seed, "num_episodes": self.num_episodes, "question": self.question.to_dict(),
            "answer": self.answer}


@dataclasses.dataclass(frozen=True)
class TaskConfig:
  """How many tasks each split holds per bucket, and which question families they ask."""

  train_per_difficulty: int = 200
  val_per_difficulty: int = 50
  families: tuple[str, ...] = questions_lib.FAMILIES
  seed: int = 0

  def __post_init__(self):
    for field in ("train_per_difficulty", "val_per_difficulty"):
      if getattr(self, field) <= 0:
        raise FieldError(field, getattr(self, field), "must be positive")
    unknown = [f for f in self.families if f not in questions_lib.FAMILIES]
    if not self.families or unknown:
      raise FieldError("families", self.families, f"must be a non-empty subset of {questions_lib.FAMILIES}")


def build_split(session: SessionConfig, config: TaskConfig, split: str) -> list[Task]:
  """The tasks of `split`, bucket by bucket in DIFFICULTIES order."""
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; known: {SPLITS}")
  count = config.train_per_difficulty if split == "train" else config.val_per_difficulty
  tasks = []
  for difficulty in DIFFICULTIES:
    for index in range(count):
      seed = f"{config.seed}/{split}/{difficulty}/{index}"
      campaign = cached_campaign(session, seed, num_episodes(difficulty))
      rng = random.Random(f"long_context/question/{seed}")
      question = questions_lib.sample_question(rng, campaign, config.families, ROLL_TYPES[:session.roll_types])
      tasks.append(Task(seed, difficulty, question, questions_lib.gold_text(question, campaign)))
  return tasks
