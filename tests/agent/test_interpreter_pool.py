"""The InterpreterPool API over real node processes: roots, batches, delegation, errors."""
import pytest

from rao_jax.agent.interpreter import CellStatus, InterpreterConfig, InterpreterPool
from test_interpreter_toy_env import TOY_ENV

LIMITS = dict(max_depth=6, delegation=True)


@pytest.fixture(scope="module")
def pool():
  config = InterpreterConfig(cell_time_limit_s=1.0)
  with InterpreterPool(config) as pool:
    yield pool


_next = [1000]


def new_roots(pool, *targets):
  ids = list(range(_next[0], _next[0] + len(targets)))
  _next[0] += len(targets)
  prompts = pool.create_roots([(i, TOY_ENV, {}, {"target": t}) for i, t in zip(ids, targets)], **LIMITS)
  assert all(not isinstance(p, str) for p in prompts), prompts
  return ids


def test_config_is_validated():
  for field, value in (("cell_time_limit_s", 0), ("memory_limit_mb", 64), ("max_output_chars", 10),
                       ("deadline_grace_s", 0), ("node_cpu_limit_s", 1.5),
                       ("max_message_bytes", 100), ("spawn_timeout_s", -1)):
    with pytest.raises(ValueError, match=field):
      InterpreterConfig(**{field: value})
  with pytest.raises(ValueError, match="node_cpu_limit_s"):
    InterpreterConfig(cell_time_limit_s=5.0, node_cpu_limit_s=2)


def test_tree_limits_are_validated(pool):
  with pytest.raises(ValueError, match="max_depth"):
    pool.create_roots([(1, TOY_ENV, {}, {"target": 1})], max_depth=-1, delegation=True)
  with pytest.raises(ValueError, match="delegation"):
    pool.create_roots([(1, TOY_ENV, {}, {"target": 1})], max_depth=2, delegation=1)


def test_sandbox_layers_are_reported(pool):
  report = pool.sandbox_report
  assert set(report) == {"rlimits", "privileges", "no_new_privs", "seccomp"}
  assert report["rlimits"].startswith("on") and "CPU s" in report["rlimits"]


def test_create_roots_returns_prompts_or_error_strings(pool):
  [taken] = new_roots(pool, 2)
  prompts = pool.create_roots([
      (1, TOY_ENV, {}, {"target": 2}), (2, "no_such_env", {}, {}), (3, TOY_ENV, {}, {}),
      (taken, TOY_ENV, {}, {"target": 1})], **LIMITS)
  assert prompts[0].goal == "Gain 2 points." and "delegate" in prompts[0].rules
  assert "unknown environment" in prompts[1]
  assert "task needs a target" in prompts[2]
  assert "already in use" in prompts[3]
  pool.release([1])


def test_results_come_in_input_order_and_namespaces_are_per_node(pool):
  ids = new_roots(pool, 1, 1, 1, 1, 1)
  results = pool.run_cells([(i, f"me = {i}") for i in ids])
  assert [r.node_id for r in results] == ids and all(r.status is CellStatus.OUTPUT for r in results)
  results = pool.run_cells([(i, "me") for i in reversed(ids)])
  assert [r.node_id for r in results] == ids[::-1]
  assert [r.text for r in results] == [f"{i}\n" for i in reversed(ids)]
  pool.release(ids)


def test_delegation_round_trip(pool):
  root, other = new_roots(pool, 3, 1)
  results = pool.run_cells([
      (root, "rs = await asyncio.gather(launch_subagent(1), launch_subagent(2))\nprint(rs)"),
      (other, "add(1)\nfinish('solo')")])
  suspended, solo = results
  assert solo.status is CellStatus.FINISHED and solo.success == 1.0 and solo.finish_value == "solo"
  assert suspended.status is CellStatus.SUSPENDED and len(suspended.spawns) == 2
  children = [s.child_id for s in suspended.spawns]
  assert len(set(children)) == 2 and min(children) > max(root, other)
  assert all(s.parent_id == root and s.depth == 1 for s in suspended.spawns)
  with pytest.raises(ValueError, match="suspended"):
    pool.run_cells([(root, "1")])
  with pytest.raises(ValueError, match="does not await"):
    pool.resume([(root, {other: "x"})])
  done = pool.run_cells([(c, f"add({n})\nfinish('made {n}')")
                         for c, n in zip(children, (1, 2))])
  assert [r.success for r in done] == [1.0, 1.0]
  with pytest.raises(TypeError, match="JSON serializable"):  # Nothing is sent; nothing changes.
    pool.resume([(root, {children[0]: object()})])
  [resumed] = pool.resume([(root, {children[0]: "made 1", children[1]: "made 2"})])
  assert (resumed.status, resumed.text) == (CellStatus.OUTPUT, "['made 1', 'made 2']\n")
  [finished] = pool.run_cells([(root, "finish('all')")])
  assert finished.success == 1.0
  [again] = pool.run_cells([(root, "1")])
  assert again.status is CellStatus.ERROR and "finished" in again.text
  with pytest.raises(ValueError, match="not suspended"):
    pool.resume([(root, {})])
  pool.release([root, other, *children])
  with pytest.raises(ValueError, match="unknown node"):
    pool.run_cells([(root, "1")])


def test_messages_larger_than_a_socket_buffer_go_through_in_both_directions(pool):
  """Frames of megabytes (a long `context` for a child, a large tool argument, a long cell) are
  written in pieces as the peer reads; several nodes do so at once."""
  roots = new_roots(pool, 1, 1, 1)
  mib = 1 << 20
  cell = (f"h = launch_subagent(1, context='c' * {3 * mib})\n"  # LaunchCall of 3 MiB, node -> pool
          f"print(add('a' * {2 * mib})[:6])\n"  # ToolCall of 2 MiB, node -> pool
          "r = await h\nprint(r)\n" + "# padding\n" * 9_000)  # a cell of ~90 kB, pool -> node
  results = pool.run_cells([(root, cell) for root in roots])
  assert [r.status for r in results] == [CellStatus.SUSPENDED] * 3, results[0].text
  children = [r.spawns[0].child_id for r in results]
  # Each child's NodeStart carries its 3 MiB context, pool -> node.
  done = pool.run_cells([(c, "add(1)\nfinish(len(context))") for c in children])
  assert [(r.status, r.finish_value) for r in done] == [(CellStatus.FINISHED, 3 * mib)] * 3
  resumed = pool.resume([(root, {c: d.finish_value}) for root, c, d in zip(roots, children, done)])
  assert [(r.status, r.text) for r in resumed] == [(CellStatus.OUTPUT, f"Error:\n{3 * mib}\n")] * 3
  pool.release(roots + children)


def test_bad_calls_raise(pool):
  [node] = new_roots(pool, 1)
  with pytest.raises(ValueError, match="at most once"):
    pool.run_cells([(node, "1"), (node, "2")])
  with pytest.raises(TypeError, match="str"):
    pool.run_cells([(node, b"1")])
  with pytest.raises(TypeError, match="int"):
    pool.create_roots([("x", TOY_ENV, {}, {"target": 1})], **LIMITS)
  with pytest.raises(TypeError, match="dicts"):
    pool.create_roots([(7, TOY_ENV, {}, "not a task")], **LIMITS)
  pool.release([node])


def test_linear_baseline_has_no_launch_subagent():
  config = InterpreterConfig()
  with InterpreterPool(config) as pool:
    [prompt] = pool.create_roots([(0, TOY_ENV, {}, {"target": 1})], max_depth=6, delegation=False)
    assert "delegate" not in prompt.rules
    [result] = pool.run_cells([(0, "launch_subagent(1)")])
    assert result.status is CellStatus.ERROR and "NameError" in result.text
  with pytest.raises(RuntimeError, match="closed"):
    pool.run_cells([(0, "1")])


def test_nodes_of_one_tree_run_in_input_order_so_rollouts_replay(pool):
  """Siblings share the tree's state; their tool calls never interleave, whatever the timing."""
  for attempt in range(10):
    [root] = new_roots(pool, 3)
    [suspended] = pool.run_cells([(root, "rs = await asyncio.gather(launch_subagent(1), launch_subagent(2))")])
    first, second = [s.child_id for s in suspended.spawns]
    order = [(first, 1), (second, 10)] if attempt % 2 else [(second, 10), (first, 1)]
    cells = [(node, "seen = []\nfor _ in range(20):\n  add(%d)\n  seen.append(points())\nprint(seen[-1])" % n)
             for node, n in order]
    results = pool.run_cells(cells)
    # The node listed first ran all its cell before the other started.
    assert [r.text for r in results] == [f"{20 * order[0][1]}\n", f"{20 * (order[0][1] + order[1][1])}\n"]
    pool.release([root, first, second])
