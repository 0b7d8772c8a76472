"""Does a flat solution fit the context window, and does every node of a recursive one? Per difficulty.

  python scripts/transcript_lengths.py --config configs/textcraft.py:tiny
  python scripts/transcript_lengths.py --config configs/textcraft.py:tiny --config.rollout.context_window=512

Solves held-out tasks of every difficulty with the suite's flat and delegating experts, renders each
node exactly as the warm start and the rollout engine do (`rao_jax.agent.episode.render_demo_node`, with
the run's tokenizer, trained in {workdir}/tokenizer if it is not there yet) and applies the engine's
limits: a node fits if before each of its turns its sequence plus `completion_limit` fits the window,
each completion fits `completion_limit`, and it needs at most `max_steps_per_node` cells. A task fits if
every node of its tree does. This is the table that chooses the window of a preset: flat solutions
should fit on easy tasks, mostly not on medium ones and never on hard ones, while every node of a
recursive solution fits.
"""
from __future__ import annotations

import collections
import os
import statistics
from collections.abc import Sequence

from absl import app, flags, logging
from ml_collections import config_flags

from rao_jax.agent import episode
from rao_jax.agent.chat import Conversation, Provenance, layout_for
from rao_jax.rollout.config import RolloutConfig
from rao_jax.train import warm_start
from rao_jax.train.settings import settings_from_config

_CONFIG = config_flags.DEFINE_config_file("config", None, "training config (configs/textcraft.py:preset)")
_SPLIT = flags.DEFINE_string("split", "val", "task split (one of the suite's)")
_PER_DIFFICULTY = flags.DEFINE_integer("per_difficulty", 30, "tasks per difficulty")


def node_fits(conversation: Conversation, rollout: RolloutConfig) -> bool:
  """Whether the engine could produce this node: the window and completion rules at every turn, and the
  cell budget."""
  turns = [i for i in range(1, len(conversation))
           if conversation.provenance[i] == Provenance.MODEL != conversation.provenance[i - 1]]
  ends = turns[1:] + [len(conversation)]
  completions = [sum(p == Provenance.MODEL for p in conversation.provenance[start:end])
                 for start, end in zip(turns, ends)]
  return (len(turns) <= rollout.max_steps_per_node
          and all(start + rollout.completion_limit <= rollout.context_window for start in turns)
          and all(length <= rollout.completion_limit for length in completions))


def main(argv: Sequence[str]) -> None:
  del argv
  logging.set_verbosity(logging.WARNING)
  settings = settings_from_config(_CONFIG.value)
  suite, rollout = settings.suite(), settings.rollout
  data_dir = os.path.join(settings.workdir, "data")
  train = [t for t in suite.load_tasks("train", data_dir) if t.difficulty in settings.data.train_difficulties]
  tokenizer = warm_start.build_tokenizer(os.path.join(settings.workdir, "tokenizer"), settings.tokenizer, suite,
                                         train, rollout.episode)
  layout = layout_for(tokenizer)
  tasks = suite.load_tasks(_SPLIT.value, data_dir)
  print(f"{settings.preset}: {settings.env_name} {settings.env} window={rollout.context_window} "
        f"completion_limit={rollout.completion_limit} cells/node={rollout.max_steps_per_node} "
        f"split={_SPLIT.value}, up to {_PER_DIFFICULTY.value} tasks per difficulty\n")
  print("| difficulty | solver | tasks | nodes / tree (mean, max) | depth (max) | tokens of the longest node "
        "(mean, max) | tasks whose every node fits |")
  print("|---|---|---|---|---|---|---|")
  for difficulty in suite.difficulties:
    chosen = [t for t in tasks if t.difficulty == difficulty][:_PER_DIFFICULTY.value]
    for delegate, name in ((False, "flat"), (True, "recursive")):
      rows = collections.defaultdict(list)
      for task in chosen:
        nodes = suite.demonstrations(task, delegate=delegate, max_depth=rollout.max_depth)
        if nodes is None:
          continue
        conversations = [episode.render_demo_node(layout, node, rollout.episode) for node in nodes]
        rows["nodes"].append(len(conversations))
        rows["depth"].append(max(node.depth for node in nodes))
        rows["tokens"].append(max(len(c) for c in conversations))
        rows["fits"].append(all(node_fits(c, rollout) for c in conversations))
      if rows:
        print(f"| {difficulty} | {name} | {len(rows['fits'])} | {statistics.mean(rows['nodes']):.1f}, "
              f"{max(rows['nodes'])} | {max(rows['depth'])} | {statistics.mean(rows['tokens']):.0f}, "
              f"{max(rows['tokens'])} | {sum(rows['fits'])} / {len(rows['fits'])} |")


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
