"""Tests of the TextCraft-Synth tfds dataset: builds and loads as array_record without TensorFlow."""
import importlib.util
import os
import sys

import pytest
import tensorflow_datasets as tfds

from rao_jax.envs.textcraft_synth import dataset
from rao_jax.envs.textcraft_synth.tasks import TaskConfig, build_splits
from rao_jax.envs.textcraft_synth.world import get_world


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def small_splits():
  return build_splits(get_world("small"), TaskConfig())


def test_tensorflow_is_not_installed():
  assert importlib.util.find_spec("tensorflow") is None


def test_build_and_load_small(data_dir, small_splits):
  for split in ("train", "val"):
    assert dataset.load_tasks("small", split, data_dir) == small_splits[split]
  assert "tensorflow" not in sys.modules
  builder = dataset.TextcraftSynth(config="small", data_dir=data_dir)
  assert builder.info.file_format.value == "array_record"
  assert builder.info.splits["train"].num_examples == len(small_splits["train"])
  record_files = sorted(path.name for path in builder.data_path.glob("*.array_record*"))
  assert record_files and all(name.startswith("textcraft_synth-") for name in record_files)


def test_loading_again_reuses_the_files(data_dir, small_splits):
  dataset.load_tasks("small", "val", data_dir)
  builder = dataset.TextcraftSynth(config="small", data_dir=data_dir)
  before = {path: os.stat(path).st_mtime_ns for path in builder.data_path.iterdir()}
  assert dataset.load_tasks("small", "val", data_dir) == small_splits["val"]
  assert {path: os.stat(path).st_mtime_ns for path in builder.data_path.iterdir()} == before


def test_data_source_examples(data_dir, small_splits):
  dataset.load_tasks("small", "train", data_dir)
  source = tfds.data_source("textcraft_synth/small", data_dir=data_dir)["train"]
  assert len(source) == len(small_splits["train"])
  example = source[0]
  task = small_splits["train"][int(example["index"])]
  assert example["goal"].decode() == task.goal_text()
  assert [name.decode() for name in example["target_items"]] == list(task.targets)
  assert list(example["inventory_counts"]) == list(task.inventory.values())
  assert int(example["gold_plan_steps"]) == len(task.gold_plan)
  assert int(example["gold_crafts"]) == task.num_gold_crafts
  assert int(example["tier"]) == task.tier
  assert dataset.example_to_task(example) == task


def test_example_round_trip_without_building(small_splits):
  for task in small_splits["val"][:20]:
    assert dataset.example_to_task(dataset.task_to_example(task, index=0)) == task


def test_example_with_mismatched_sequences_is_rejected(small_splits):
  example = dataset.task_to_example(small_splits["val"][0], index=0)
  example["inventory_counts"] = example["inventory_counts"][:-1]
  with pytest.raises(ValueError, match="counts"):
    dataset.example_to_task(example)


@pytest.mark.parametrize("config_name, split", [("small", "test"), ("huge", "train")])
def test_load_tasks_rejects_unknown_names(data_dir, config_name, split):
  with pytest.raises(ValueError):
    dataset.load_tasks(config_name, split, data_dir)
