"""Chained research questions as a tfds dataset in array_record files (random access, no TensorFlow needed).

    builder = ChainedResearch(config="tiny", data_dir=...)   # importing this module registers the name
                                                             # for tfds.builder("chained_research/tiny")
    builder.download_and_prepare()                           # generates; nothing is downloaded
    tasks = load_tasks("tiny", "val", data_dir)              # `Task` objects in split order

Each example is one question: its text, the gold answer and aliases, the difficulty, the hops (parallel
sequences of sub-questions, answers and answering entities; a hop's aliases are joined by a
separator), the split, and `index`, the question's position in its split (tfds shuffles records while
writing; `load_tasks` restores the order). The graph and pages are not stored: they are a pure
function of the preset (`questions.PRESETS`) and are rebuilt in memory.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Mapping

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from rao_jax.envs import tfds_tasks
from rao_jax.envs.chained_research.questions import (
    DIFFICULTIES, PRESETS, SPLITS, Hop, ResearchPreset, Task, build_splits)

DATASET_NAME = "chained_research"
_ALIAS_SEPARATOR = "\x1f"  # between a hop's answer forms (no answer contains it)


@dataclasses.dataclass(eq=False)
class ChainedResearchBuilderConfig(tfds.core.BuilderConfig):
  """A `questions.PRESETS` entry (its name is the builder config's name)."""

  preset: ResearchPreset | None = None


BUILDER_CONFIGS = tuple(
    ChainedResearchBuilderConfig(name=name, preset=preset,
                                 description=f"The {name!r} preset of rao_jax.envs.chained_research.questions.")
    for name, preset in PRESETS.items())


def _text(value: bytes | str) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def task_to_example(task: Task, index: int) -> dict[str, Any]:
  """The tfds example of `task`, the `index`-th task of its split."""
  return {
      "index": index,
      "question": task.question,
      "answers": np.asarray(list(task.answers), np.object_),
      "difficulty": task.difficulty,
      "split": task.split,
      "hop_questions": np.asarray([hop.question for hop in task.hops], np.object_),
      "hop_answers": np.asarray([_ALIAS_SEPARATOR.join(hop.answers) for hop in task.hops], np.object_),
      "hop_entities": np.asarray([hop.entity for hop in task.hops], np.object_),
  }


def example_to_task(example: Mapping[str, Any]) -> Task:
  """The `Task` of a decoded example (as read from the data source)."""
  difficulty = example["difficulty"]
  if not isinstance(difficulty, (str, bytes)):  # ClassLabel decodes to its index.
    difficulty = DIFFICULTIES[int(difficulty)]
  hops = tuple(Hop(question=_text(q), answers=tuple(_text(a).split(_ALIAS_SEPARATOR)), entity=_text(e))
               for q, a, e in zip(example["hop_questions"], example["hop_answers"], example["hop_entities"]))
  return Task(question=_text(example["question"]), answers=tuple(_text(a) for a in example["answers"]),
              hops=hops, difficulty=_text(difficulty), split=_text(example["split"]))


class ChainedResearch(tfds.core.GeneratorBasedBuilder):
  """Multi-hop questions over a seeded fictional encyclopedia (splits "train", "val", "rl")."""

  name = DATASET_NAME
  VERSION = tfds.core.Version("1.3.0")
  RELEASE_NOTES = {"1.0.0": "Initial release.",
                   "1.1.0": "tiny: pages state every fact in its object-last sentence (new questions).",
                   "1.2.0": "A third split, rl, over a third graph; tiny: years and lengths on a coarse grid (new questions).",
                   "1.3.0": "tiny: 50 val questions a tier (was 20; new val questions, train and rl unchanged)."}
  BUILDER_CONFIGS = list(BUILDER_CONFIGS)
  DEFAULT_CONFIG_NAME = "tiny"
  code_path = epath.Path(__file__)  # as in textcraft_synth/dataset.py: no importlib_resources lookup

  def __init__(self, *, file_format: str = "array_record", **kwargs: Any):
    super().__init__(file_format=file_format, **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    text_sequence = tfds.features.Tensor(shape=(None,), dtype=np.object_)
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "index": np.int32,
            "question": tfds.features.Text(),
            "answers": text_sequence,
            "difficulty": tfds.features.ClassLabel(names=list(DIFFICULTIES)),
            "split": tfds.features.Text(),
            "hop_questions": text_sequence,
            "hop_answers": text_sequence,
            "hop_entities": text_sequence,
        }),
        supervised_keys=None,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
    del dl_manager  # Generated, not downloaded.
    splits = build_splits(self.builder_config.name)
    return {split: self._generate_examples(splits[split]) for split in SPLITS}

  def _generate_examples(self, tasks: list[Task]) -> Iterator[tuple[int, dict[str, Any]]]:
    for index, task in enumerate(tasks):
      yield index, task_to_example(task, index)


def load_tasks(config_name: str, split: str, data_dir: str | None = None) -> list[Task]:
  """The tasks of `split` ("train", "val" or "rl") of config `config_name`, in split order; builds if needed."""
  examples = tfds_tasks.read_split(ChainedResearch, config_name, split, SPLITS, data_dir)
  return [example_to_task(example) for example in examples]
