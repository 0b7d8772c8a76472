"""The toy TextCraft-Synth setting of the `tiny` preset: toy recipe rules, count-1 tasks, compact
observations and compact expert transcripts."""
import collections
import re

import pytest

from rao_jax.agent import episode, turn_format
from rao_jax.envs.textcraft_synth import env as env_lib
from rao_jax.envs.textcraft_synth import solvers, tasks as tasks_lib
from rao_jax.envs.textcraft_synth.dataset import BUILDER_CONFIGS
from rao_jax.envs.textcraft_synth.world import WORLD_PRESETS, WorldConfig, generate_world, get_world

TOY_DATASET = next(c for c in BUILDER_CONFIGS if c.name == "toy")
ENV_CONFIG = {"world": "toy", "info_style": "compact"}
FLAT = solvers.SolverConfig(delegate=False, max_depth=12, crafts_per_cell=2, style="compact")
RECURSIVE = solvers.SolverConfig(delegate=True, max_depth=12, max_own_crafts=1, crafts_per_cell=2, style="compact")


@pytest.fixture(scope="module")
def toy():
  return get_world("toy")


@pytest.fixture(scope="module")
def splits(toy):
  return tasks_lib.build_splits(toy, TOY_DATASET.tasks)


def _expansion(world, name, counter):
  """Counts every crafted item of `name`'s recipe tree (with repeats)."""
  counter[name] += 1
  for ingredient, _ in world.item(name).recipe.ingredients:
    if not world.item(ingredient).is_base:
      _expansion(world, ingredient, counter)
  return counter


def test_toy_recipes_follow_the_toy_rules(toy):
  for item in toy.items.values():
    if item.is_base:
      continue
    recipe = item.recipe
    assert recipe.result_count == 1 and all(units == 1 for _, units in recipe.ingredients)
    ingredients = [toy.item(name) for name, _ in recipe.ingredients]
    assert 1 <= len(ingredients) <= 2 and all(i.domain == item.domain for i in ingredients)
    if item.tier == 1:
      assert all(i.is_base for i in ingredients)
    else:
      tiers = sorted((i.tier for i in ingredients), reverse=True)
      assert tiers[0] == item.tier - 1 and all(not i.is_base for i in ingredients)
      assert tiers[1:] in ([], [max(1, item.tier - 2)])


def test_toy_recipe_trees_repeat_no_crafted_item(toy):
  for name, item in toy.items.items():
    if not item.is_base:
      counts = _expansion(toy, name, collections.Counter())
      assert max(counts.values()) == 1, (name, counts.most_common(2))


def test_toy_world_is_deterministic_and_sized_for_held_out_tiers(toy):
  assert generate_world(WORLD_PRESETS["toy"]).fingerprint() == toy.fingerprint()
  assert generate_world(WorldConfig(**{**vars(WORLD_PRESETS["toy"]), "seed": 1})).fingerprint() != toy.fingerprint()
  assert len(toy.base_items) == 50 and all(len(toy.items_by_tier(t)) >= 50 for t in range(1, 13))
  some_second = [i for i in toy.items.values() if i.tier >= 2 and len(i.recipe.ingredients) == 2]
  assert 0.15 < len(some_second) / (len(toy.items) - 50 - 70) < 0.5  # about second_ingredient_probability


@pytest.mark.parametrize("fields, message", [
    (dict(recipe_rules="toy", cross_domain=True), "cross_domain=False"),
    (dict(recipe_rules="tiny"), "recipe_rules"),
    (dict(second_ingredient_probability=1.5), "second_ingredient_probability"),
])
def test_bad_world_configs_raise(fields, message):
  with pytest.raises(ValueError, match=message):
    WorldConfig(**fields)


def test_toy_tasks_ask_for_one_unit_and_hold_out_enough_targets(splits):
  for split, tasks in splits.items():
    assert all(list(t.targets.values()) == [1] for t in tasks)
  train_targets = {item for t in splits["train"] for item in t.targets}
  val_targets = {item for t in splits["val"] for item in t.targets}
  assert not train_targets & val_targets
  per_difficulty = collections.Counter(t.difficulty for t in splits["val"])
  assert all(per_difficulty[d] >= 30 for d in tasks_lib.DIFFICULTIES), per_difficulty
  with pytest.raises(ValueError, match="target_counts"):
    tasks_lib.TaskConfig(target_counts=(0, 1))


def test_compact_get_info(splits):
  task = splits["train"][0]
  node = env_lib.make_root_environment(ENV_CONFIG, task.to_dict())
  (target,) = task.targets
  base = next(iter(task.inventory))
  info = node.get_info([target, base, "no_such_item"])
  assert info == {target: node.world.item(target).recipe.ingredient_dict(), base: "base",
                  "no_such_item": "unknown item"}
  assert node.get_info(target) == {target: info[target]}
  child = node.fork({target: 1})
  assert child.info_style == "compact" and isinstance(child.get_info([target]), dict)
  full = env_lib.make_root_environment({"world": "toy"}, task.to_dict())
  assert isinstance(full.get_info([target]), list)
  with pytest.raises(ValueError, match="info_style"):
    env_lib.make_root_environment({"world": "toy", "info_style": "long"}, task.to_dict())


def _solve(task, config):
  return solvers.solve(env_lib.make_root_environment(ENV_CONFIG, task.to_dict()), config)


@pytest.mark.parametrize("difficulty", tasks_lib.DIFFICULTIES)
def test_compact_experts_solve_every_tier(splits, difficulty):
  for task in [t for t in splits["val"] if t.difficulty == difficulty][:5]:
    flat, recursive = _solve(task, FLAT), _solve(task, RECURSIVE)
    assert flat.success == recursive.success == 1.0
    assert len(list(flat.nodes())) == 1
    nodes = list(recursive.nodes())
    assert len(nodes) == task.num_gold_crafts  # one node per crafted item of the recipe tree
    assert all(n.success == 1.0 and len(n.turns) <= 3 for n in nodes)
    for node in nodes + [flat]:
      for turn in node.turns:
        assert turn_format.THOUGHT_OPEN not in episode.assistant_text(turn)


def test_compact_turns_use_the_looked_up_recipes(splits):
  task = next(t for t in splits["val"] if t.difficulty == "hard")
  for node in _solve(task, RECURSIVE).nodes():
    (goal,) = node.targets
    recipe = get_world("toy").item(goal).recipe.ingredient_dict()
    assert node.turns[0].code == f"info = get_info([{goal!r}])\ninfo"
    assert node.turns[0].output == repr({goal: recipe})
    assert node.turns[-1].code == f"craft(info[{goal!r}], ({goal!r}, 1))\nfinish('done')"
    if node.children:
      assert f"for i, n in info[{goal!r}].items()" in node.turns[1].code
      assert sorted(c.goal.rsplit(" ", 1)[1] for c in node.children) == sorted(recipe)


def test_flat_compact_expert_crafts_in_reverse_lookup_order(splits):
  task = next(t for t in splits["val"] if t.difficulty == "medium" and t.num_gold_crafts >= 6)
  (root,) = _solve(task, FLAT).nodes()
  looked_up = [name for t in root.turns if "get_info" in t.code
               for name in re.findall(r"'([^']+)'", t.code.split("get_info(")[1].split(")")[0])]
  crafted = [name for t in root.turns for name in re.findall(r"craft\(info\['([^']+)'\]", t.code)]
  assert crafted == looked_up[::-1] and len(crafted) == task.num_gold_crafts


def test_counts_the_recipe_does_not_spell_out_are_written_out():
  small = get_world("small")
  task = next(t for t in tasks_lib.build_splits(small, tasks_lib.TaskConfig(num_train=40, num_val=0))["train"]
              if t.difficulty == "easy" and max(t.targets.values()) > 1)
  root = env_lib.make_root_environment({"world": "small", "info_style": "compact"}, task.to_dict())
  transcript = solvers.solve(root, RECURSIVE)
  assert transcript.success == 1.0
  assert any(re.search(r"craft\(\{'", turn.code) or "for i, n in {" in turn.code
             for node in transcript.nodes() for turn in node.turns)
