"""Long-context tasks as a tfds dataset in array_record files (random access, no TensorFlow needed).

    builder = LongContext(config="tiny", data_dir=...)   # tfds.builder("long_context/tiny")
    builder.download_and_prepare()                      # generates; nothing is downloaded
    tasks = load_tasks("tiny", "val", data_dir)         # `Task` objects in split order

Each example is one task: the campaign seed, its bucket, the question (family, its text and its
parameters as JSON), the gold answer text, the transcript and its size, and `index`, the task's position
in its split (tfds shuffles records while writing; `load_tasks` restores the order). The transcript is
stored for reading and statistics; the environment regenerates it from the seed.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterator, Mapping

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from rao_jax.envs import tfds_tasks
from rao_jax.envs.long_context import questions as questions_lib
from rao_jax.envs.long_context.sessions import SessionConfig, cached_campaign
from rao_jax.envs.long_context.tasks import DIFFICULTIES, SPLITS, Task, TaskConfig, build_split

DATASET_NAME = "long_context"
# The tiny preset's question families: counts whose chunk answers are small integers.
TINY_FAMILIES = ("rolls_by_character", "rolls_of_type", "spells_by_character", "rolls_total")


@dataclasses.dataclass(eq=False)
class LongContextConfig(tfds.core.BuilderConfig):
  """A session simulator and the task sampler run on it."""

  session: SessionConfig = SessionConfig()
  tasks: TaskConfig = TaskConfig()


BUILDER_CONFIGS = (
    LongContextConfig(
        name="paper", session=SessionConfig(cast_size=6, lines_per_episode=2000, roll_types=8, spells=10),
        tasks=TaskConfig(train_per_difficulty=300, val_per_difficulty=50),
        description="Every question family over long episodes (~20K tokens each; an 8K-window agent "
                    "reads at most 40% of one)."),
    LongContextConfig(
        name="tiny", session=SessionConfig(),
        tasks=TaskConfig(train_per_difficulty=400, val_per_difficulty=30, families=TINY_FAMILIES),
        description="The tiny preset's tasks: 4 characters, count questions, ~285-line episodes "
                    "(>= 6x a 416-token window each)."),
    LongContextConfig(
        name="mini", session=SessionConfig(),
        tasks=TaskConfig(train_per_difficulty=8, val_per_difficulty=4, families=TINY_FAMILIES),
        description="The tiny setting with 8 train and 4 val tasks per bucket: smoke runs and tests."),
)


def task_to_example(task: Task, index: int, session: SessionConfig) -> dict[str, Any]:
  campaign = cached_campaign(session, task.seed, task.num_episodes)
  return {
      "index": index,
      "seed": task.seed,
      "difficulty": task.difficulty,
      "family": task.question.family,
      "question": task.question.text(),
      "question_json": json.dumps(task.question.to_dict(), sort_keys=True),
      "answer": task.answer,
      "transcript": campaign.text,
      "transcript_lines": len(campaign.lines),
  }


def _text(value: bytes | str) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def example_to_task(example: Mapping[str, Any]) -> Task:
  difficulty = example["difficulty"]
  if not isinstance(difficulty, (str, bytes)):  # ClassLabel decodes to its index.
    difficulty = DIFFICULTIES[int(difficulty)]
  question = questions_lib.Question.from_dict(json.loads(_text(example["question_json"])))
  return Task(seed=_text(example["seed"]), difficulty=_text(difficulty), question=question,
              answer=_text(example["answer"]))


class LongContext(tfds.core.GeneratorBasedBuilder):
  """Generated long-context aggregation questions (the Oolong-Real stand-in); splits "train", "val"."""

  name = DATASET_NAME
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = list(BUILDER_CONFIGS)
  DEFAULT_CONFIG_NAME = "tiny"
  code_path = epath.Path(__file__)  # see textcraft_synth/dataset.py

  def __init__(self, *, file_format: str = "array_record", **kwargs: Any):
    super().__init__(file_format=file_format, **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "index": np.int32,
            "seed": tfds.features.Text(),
            "difficulty": tfds.features.ClassLabel(names=list(DIFFICULTIES)),
            "family": tfds.features.Text(),
            "question": tfds.features.Text(),
            "question_json": tfds.features.Text(),
            "answer": tfds.features.Text(),
            "transcript": tfds.features.Text(),
            "transcript_lines": np.int32,
        }),
        supervised_keys=None,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
    del dl_manager  # Generated, not downloaded.
    config = self.builder_config
    return {split: self._generate_examples(build_split(config.session, config.tasks, split), config.session)
            for split in SPLITS}

  def _generate_examples(self, tasks: list[Task], session: SessionConfig) -> Iterator[tuple[int, dict]]:
    for index, task in enumerate(tasks):
      yield index, task_to_example(task, index, session)


def builder_config(name: str) -> LongContextConfig:
  known = {config.name: config for config in BUILDER_CONFIGS}
  if name not in known:
    raise ValueError(f"unknown config {name!r}; known: {sorted(known)}")
  return known[name]


def load_tasks(config_name: str, split: str, data_dir: str | None = None) -> list[Task]:
  """The tasks of `split` of config `config_name`, in split order; builds the dataset if needed."""
  examples = tfds_tasks.read_split(LongContext, config_name, split, SPLITS, data_dir)
  return [example_to_task(example) for example in examples]
