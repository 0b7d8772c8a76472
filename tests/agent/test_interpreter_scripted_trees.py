"""End to end without a model: the recursive expert solver's transcripts replayed through the pool.

Every node's cells run in the sandbox in the order a rollout engine would run them: one batch per
round over every node that has a turn to take. Parents suspend on `launch_subagent` (sequentially,
or in parallel through `asyncio.gather` for multi-target tasks), children craft into the shared
inventory and finish, parents resume with their children's finish messages and finish; the root
must succeed on every sampled task of every difficulty (small world), and every prompt must match
the solver's.
"""
import collections
import dataclasses

import pytest

from rao_jax.agent.interpreter import CellStatus, InterpreterConfig, InterpreterPool

env_lib = pytest.importorskip("rao_jax.envs.textcraft_synth.env")
solvers = pytest.importorskip("rao_jax.envs.textcraft_synth.solvers")
tasks_lib = pytest.importorskip("rao_jax.envs.textcraft_synth.tasks")
world_lib = pytest.importorskip("rao_jax.envs.textcraft_synth.world")

ENV_CONFIG = {"world": "small"}
TASKS_PER_DIFFICULTY = 2


def sample_tasks():
  """The tasks with the fewest gold crafts of each difficulty, with their expert transcripts."""
  world = world_lib.get_world(ENV_CONFIG["world"])
  tasks = tasks_lib.build_splits(world, tasks_lib.TaskConfig(num_train=60, num_val=0))["train"]
  chosen = collections.defaultdict(list)
  for task in sorted(tasks, key=lambda t: t.num_gold_crafts):
    if len(chosen[task.difficulty]) < TASKS_PER_DIFFICULTY:
      transcript = solvers.solve(env_lib.make_root_environment(ENV_CONFIG, task.to_dict()),
                                 solvers.RECURSIVE)
      assert transcript.success == 1.0
      chosen[task.difficulty].append((task, transcript))
  return chosen


def sample_parallel_tasks(count=2):
  """Multi-target tasks whose expert transcripts launch children in parallel (asyncio.gather)."""
  world = world_lib.get_world(ENV_CONFIG["world"])
  config = tasks_lib.TaskConfig(num_train=60, num_val=0, multi_target=True)
  chosen = []
  tasks = tasks_lib.build_splits(world, config)["train"]
  for task in sorted(tasks, key=lambda t: t.num_gold_crafts):
    transcript = solvers.solve(env_lib.make_root_environment(ENV_CONFIG, task.to_dict()),
                               solvers.RECURSIVE)
    if any("asyncio.gather" in turn.code for node in transcript.nodes() for turn in node.turns):
      chosen.append((task, transcript))
      if len(chosen) == count:
        return chosen
  raise AssertionError("no multi-target task delegates in parallel")


def replay(pool, root_id, task, transcript):
  """Runs a solved tree's cells through `pool`.

  Returns the root's result, the number of nodes, and the most spawns one result carried.
  """
  [prompt] = pool.create_roots([(root_id, "textcraft_synth", ENV_CONFIG, task.to_dict())],
                               max_depth=6, delegation=True)
  assert dataclasses.asdict(prompt) == transcript.prompt
  script = {root_id: transcript}
  next_turn = {root_id: 0}
  runnable = [root_id]
  parent_of, awaiting, delivered = {}, collections.defaultdict(set), collections.defaultdict(dict)
  finals = {}
  widest = [0]

  def take(results):
    ready_to_resume = []
    for result in results:
      node = result.node_id
      assert result.status not in (CellStatus.ERROR, CellStatus.CRASHED), result
      if result.status is CellStatus.SUSPENDED:
        widest[0] = max(widest[0], len(result.spawns))
        launched = [c for c in script[node].children
                    if c.launched_by_cell == next_turn[node] + 1 and c not in script.values()]
        for spawn, child in zip(result.spawns, launched):
          assert dataclasses.asdict(spawn.prompt) == child.prompt and spawn.parent_id == node
          script[spawn.child_id], next_turn[spawn.child_id] = child, 0
          parent_of[spawn.child_id] = node
          awaiting[node].add(spawn.child_id)
          runnable.append(spawn.child_id)
        continue
      next_turn[node] += 1
      if result.status is CellStatus.FINISHED:
        finals[node] = result
        assert result.success == 1.0, (script[node].goal, result)
        parent = parent_of.get(node)
        if parent is not None:
          awaiting[parent].discard(node)
          delivered[parent][node] = result.finish_value
          if not awaiting[parent]:
            ready_to_resume.append(parent)
      else:
        # Exact texts depend on how siblings interleave (inventory counts); failures must not occur.
        assert "Error" not in result.text, result.text
        runnable.append(node)
    return ready_to_resume

  while root_id not in finals:
    batch, runnable[:] = list(runnable), []
    to_resume = take(pool.run_cells([(n, script[n].turns[next_turn[n]].code) for n in batch]))
    while to_resume:
      deliveries = [(parent, delivered.pop(parent)) for parent in to_resume]
      to_resume = take(pool.resume(deliveries))
  pool.release(list(script))
  return finals[root_id], len(script), widest[0]


@pytest.mark.e2e
def test_expert_trees_succeed_through_the_sandbox():
  chosen = sample_tasks()
  assert set(chosen) == set(tasks_lib.DIFFICULTIES)
  config = InterpreterConfig(cell_time_limit_s=5.0)
  with InterpreterPool(config) as pool:
    root_id = 0
    for difficulty, sampled in sorted(chosen.items()):
      for task, transcript in sampled:
        result, num_nodes, _ = replay(pool, root_id, task, transcript)
        assert result.status is CellStatus.FINISHED and result.success == 1.0
        assert num_nodes == sum(1 for _ in transcript.nodes())
        root_id += 10**6


@pytest.mark.e2e
def test_parallel_delegation_succeeds_through_the_sandbox():
  config = InterpreterConfig(cell_time_limit_s=5.0)
  with InterpreterPool(config) as pool:
    for root_id, (task, transcript) in enumerate(sample_parallel_tasks()):
      result, num_nodes, widest = replay(pool, root_id * 10**6, task, transcript)
      assert result.status is CellStatus.FINISHED and result.success == 1.0
      assert num_nodes == sum(1 for _ in transcript.nodes())
      assert widest >= 2  # Siblings launched by one gather were all spawned before any resolved.
