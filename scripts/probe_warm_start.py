"""Does a warm-start policy read its context? Teacher-forced accuracy on held-out expert transcripts.

  python scripts/probe_warm_start.py --config configs/textcraft.py:tiny [--config.a.b=...] \
      [--split val --difficulty easy --num_tasks 16]

Renders the flat expert's transcripts of held-out tasks exactly as the warm start was trained on them
(`sft.build_sft_sequences`, without renamed copies), runs the run's warm-start policy over each (it is
built first if the work directory has none) and reports the argmax accuracy of its next-token
predictions on the policy's tokens, split into tokens inside an item name and all others. A policy
that learned the protocol but not to copy items from the goal and the observations scores high on
the others and near zero on item tokens, and then cannot solve a task it has not memorised.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from rao_jax import tokenizer as tokenizer_lib
from rao_jax.envs.textcraft_synth.dataset import load_tasks
from rao_jax.envs.textcraft_synth.renaming import item_name_pattern
from rao_jax.envs.textcraft_synth.world import get_world
from rao_jax.train import sft, trainer
from rao_jax.train.settings import settings_from_config

_CONFIG = config_flags.DEFINE_config_file("config", None, "training config (configs/textcraft.py:preset)")
_SPLIT = flags.DEFINE_string("split", "val", "split of the held-out tasks")
_DIFFICULTY = flags.DEFINE_string("difficulty", "easy", "difficulty of the held-out tasks")
_NUM_TASKS = flags.DEFINE_integer("num_tasks", 16, "number of held-out tasks")


def main(argv: Sequence[str]) -> None:
  del argv
  logging.set_verbosity(logging.WARNING)
  settings = settings_from_config(_CONFIG.value)
  run = trainer.build_run(settings)
  tasks = [t for t in load_tasks(settings.dataset, _SPLIT.value, f"{settings.workdir}/data")
           if t.difficulty == _DIFFICULTY.value][:_NUM_TASKS.value]
  data = dataclasses.replace(settings.sft_data, mixture="flat", difficulties=(_DIFFICULTY.value,),
                             max_tasks_per_difficulty=0, renamed_copies=0)
  conversations = sft.build_sft_sequences(tasks, run.layout, data)
  items = tuple(get_world(settings.world).items)
  forward = jax.jit(lambda tokens: run.model(tokens, jnp.arange(tokens.shape[1])[None])[0])
  hits = {"item": [0, 0], "other": [0, 0]}
  for conversation in conversations:
    ids = np.asarray(conversation.token_ids())
    predicted = np.asarray(jnp.argmax(forward(jnp.asarray(ids)[None])[0], -1))[:-1]  # predicts ids[1:]
    policy = conversation.loss_mask()[1:]
    is_item = tokenizer_lib.matched_token_mask(run.tokenizer, ids, item_name_pattern(items))[1:]
    correct = predicted == ids[1:]
    for name, where in (("item", policy & is_item), ("other", policy & ~is_item)):
      hits[name][0] += int(correct[where].sum())
      hits[name][1] += int(where.sum())
  print(f"{len(conversations)} expert sequences of {len(tasks)} {_SPLIT.value} {_DIFFICULTY.value} tasks")
  print("| policy tokens | count | argmax accuracy |\n|---|---|---|")
  for name, (right, total) in hits.items():
    print(f"| {name} | {total} | {right / max(total, 1):.3f} |")


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
