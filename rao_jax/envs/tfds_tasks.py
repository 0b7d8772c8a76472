"""Reading a suite's task split back from its tfds builder, in split order."""
from __future__ import annotations

from typing import Any, Mapping

import tensorflow_datasets as tfds


def read_split(builder: tfds.core.DatasetBuilder, split: str) -> list[Mapping[str, Any]]:
  """Every example of `split`, built first if needed, sorted by its `index` feature.

  tfds shuffles records while writing; each suite stores a task's position in its split as `index`.
  """
  builder.download_and_prepare()  # generates; nothing is downloaded
  source = builder.as_data_source(split=split)
  examples = source.__getitems__(range(len(source)))  # one batched read
  return sorted(examples, key=lambda example: int(example["index"]))
