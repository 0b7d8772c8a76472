"""Item renamings: seeded bijections that keep an expert transcript a correct solution of what it shows."""
import re

import pytest

from rao_jax.agent import episode
from rao_jax.envs.textcraft_synth import env as env_lib
from rao_jax.envs.textcraft_synth import solvers, tasks as tasks_lib, world as world_lib
from rao_jax.envs.textcraft_synth.renaming import ItemRenaming

WORLD = world_lib.get_world("small")


def test_a_seeded_bijection_within_base_and_crafted_items():
  renaming = ItemRenaming(WORLD, seed=3)
  assert sorted(renaming.mapping) == sorted(WORLD.items) == sorted(renaming.mapping.values())
  assert all(WORLD.item(new).is_base == WORLD.item(old).is_base for old, new in renaming.mapping.items())
  assert sum(old != new for old, new in renaming.mapping.items()) > len(WORLD.items) // 2
  assert ItemRenaming(WORLD, seed=3).mapping == renaming.mapping
  assert ItemRenaming(WORLD, seed=4).mapping != renaming.mapping


def test_only_whole_names_are_replaced():
  renaming = ItemRenaming(WORLD, seed=0)
  long_name = next(n for n in WORLD.items
                   if re.fullmatch(r"\w+_\w+_\d+", n) and n.rsplit("_", 1)[0] in WORLD.items)
  short_name = long_name.rsplit("_", 1)[0]
  new_long, new_short = renaming.mapping[long_name], renaming.mapping[short_name]
  text = f'craft({{"{short_name}": 2}}, ("{long_name}", 4)) # {short_name}x stays'
  assert renaming(text) == f'craft({{"{new_short}": 2}}, ("{new_long}", 4)) # {short_name}x stays'


@pytest.mark.parametrize("seed", [0, 1])
def test_a_renamed_transcript_is_the_same_solution_under_other_names(seed):
  task = tasks_lib.build_splits(WORLD, tasks_lib.TaskConfig(num_train=12, num_val=2))["train"][0]
  transcript = solvers.solve(env_lib.make_root_environment({"world": "small"}, task.to_dict()))
  renaming = ItemRenaming(WORLD, seed=seed)
  inverse = {new: old for old, new in renaming.mapping.items()}
  texts = [transcript.goal] + [episode.assistant_text(t) for t in transcript.turns] + [
      episode.observation_text(i, t.output) for i, t in enumerate(transcript.turns[:-1], start=1)]
  renamed = [renaming(text) for text in texts]
  # Renaming is invertible text for text, and it moved the goal's item everywhere it occurs.
  assert [re.sub(r"\w+", lambda m: inverse.get(m.group(), m.group()), text) for text in renamed] == texts
  (goal_item,) = task.targets
  lookup = next(t for t in renamed[1:] if "get_info" in t)
  assert f'"{renaming.mapping[goal_item]}"' in lookup and renaming.mapping[goal_item] in renamed[0]
  words, renamed_words = (re.findall(r"\w+", " ".join(t)) for t in (texts, renamed))
  assert words.count(goal_item) == renamed_words.count(renaming.mapping[goal_item]) > 2
