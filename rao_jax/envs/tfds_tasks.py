"""Reading a suite's task split back from its tfds builder, in split order."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import tensorflow_datasets as tfds


def read_split(builder_class: type[tfds.core.GeneratorBasedBuilder], config_name: str, split: str,
               splits: Sequence[str], data_dir: str | None = None) -> list[Mapping[str, Any]]:
  """Every example of `split` of the builder's config `config_name`, built first if needed, sorted by its
  `index` feature (tfds shuffles records while writing; each suite stores a task's position in its split
  as `index`). ValueError naming the known splits or configs for an unknown one."""
  if split not in splits:
    raise ValueError(f"unknown split {split!r}; known: {tuple(splits)}")
  known = [config.name for config in builder_class.BUILDER_CONFIGS]
  if config_name not in known:
    raise ValueError(f"unknown config {config_name!r}; known: {known}")
  builder = builder_class(config=config_name, data_dir=data_dir)
  builder.download_and_prepare()  # generates; nothing is downloaded
  source = builder.as_data_source(split=split)
  examples = source.__getitems__(range(len(source)))  # one batched read
  return sorted(examples, key=lambda example: int(example["index"]))
