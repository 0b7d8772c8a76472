"""Semantics of one node's cells (in-process, without worker isolation): namespaces, REPL output,
errors, finish, and the scheduler behind `await launch_subagent(...)` and `asyncio.gather`."""
import collections
import json

import pytest

from rao_jax.agent.interpreter import cell
from rao_jax.agent.interpreter.host import EnvironmentHost
from rao_jax.agent.interpreter.messages import TreeLimits
from rao_jax.agent.interpreter.messages import CellStatus
from test_interpreter_toy_env import make_root_environment


class Tree:
  """NodeRuntimes of one tree in this process, each with an `EnvironmentHost` as the pool serves it
  (the pool's process boundary is tested in test_interpreter_pool.py)."""

  def __init__(self, target=3, max_depth=6, delegation=True, max_output_chars=4096):
    self.nodes, self.hosts = {}, {}
    self._limits = TreeLimits(max_depth, delegation)
    self._options = dict(delegation=delegation, max_depth=max_depth,
                         max_output_chars=max_output_chars, time_limit_s=1.0)
    root = EnvironmentHost(make_root_environment({}, {"target": target}), 0, self._limits)
    self.root = self.nodes[self._add(root)]

  def _add(self, host):
    key = len(self.nodes)
    self.hosts[key] = host
    self.nodes[key] = cell.NodeRuntime(host.depth, _LocalHost(self, host),
                                       variables=host.variables(), tool_names=host.tool_names(),
                                       **self._options)
    return key

  def spawned(self, outcome):
    """The children an outcome reports, as (key, depth, prompt) records."""
    return [Spawned(key, self.hosts[key].depth, self.hosts[key].prompt) for key in outcome.spawns]


Spawned = collections.namedtuple("Spawned", "key depth prompt")


class _LocalHost:
  """`cell.NodeHost` calling an `EnvironmentHost` directly."""

  def __init__(self, tree, host):
    self._tree, self._host = tree, host

  def call_tool(self, name, args, kwargs):
    return json.loads(self._host.call_tool_json(name, args, kwargs))  # as the node receives it

  def launch(self, args, kwargs):
    child = self._host.launch(args, kwargs)
    return child if isinstance(child, str) else self._tree._add(child)


def test_namespace_persists_and_trailing_expression_is_echoed():
  root = Tree().root
  assert root.run_cell("x = 20").text == ""
  outcome = root.run_cell("print('sum', x + 1)\nx * 2")
  assert (outcome.status, outcome.text) == (CellStatus.OUTPUT, "sum 21\n40\n")
  assert root.run_cell("None").text == ""
  assert root.run_cell("target, context").text == "(3, '')\n"


def test_tools_work_and_take_and_return_plain_data():
  root = Tree().root
  assert root.run_cell("add(2)").text == "'now 2'\n"
  assert root.run_cell("explode()").text.startswith("'Error: explode failed: RuntimeError")
  outcome = root.run_cell("class S(str): pass\nadd(S('x'))")
  assert outcome.status is CellStatus.ERROR and "plain data" in outcome.text
  assert "tool" in root.run_cell("add").text


def test_errors_show_cell_lines_only():
  root = Tree().root
  outcome = root.run_cell("def f(n):\n  return 1 / n\nprint('before')\nf(0)")
  assert outcome.status is CellStatus.ERROR
  assert outcome.text.startswith("before\nTraceback (most recent call last):")
  assert "line 4, in <cell>: f(0)" in outcome.text
  assert "line 2, in f: return 1 / n" in outcome.text
  assert outcome.text.endswith("ZeroDivisionError: division by zero")
  assert "/" + "work" not in outcome.text and ".py" not in outcome.text
  assert root.run_cell("x = (").text.startswith("SyntaxError:")
  assert root.run_cell("import os").text.startswith("SandboxError:")


def test_finish_ends_the_cell_and_requires_json_like_values():
  root = Tree().root
  outcome = root.run_cell("finish({1: 2})\nprint('still here')")
  assert outcome.status is CellStatus.ERROR and "JSON-like" in outcome.text
  assert "still here" not in outcome.text
  assert not root.finished
  outcome = root.run_cell("print('a')\nfinish({'items': [1, 2.5, None, True, ('t',)]})\nprint('b')")
  assert outcome.status is CellStatus.FINISHED
  assert outcome.finish_value == {"items": [1, 2.5, None, True, ["t"]]}
  assert outcome.text == "a\n"


def test_finish_is_not_caught_by_except_exception_or_bare_except():
  root = Tree().root
  outcome = root.run_cell("try:\n  finish('x')\nexcept:\n  print('caught')")
  assert outcome.status is CellStatus.FINISHED and "caught" not in outcome.text


def test_sequential_launch_suspends_and_resumes_where_it_awaited():
  tree = Tree()
  root = tree.root
  outcome = root.run_cell(
      "print('start')\nr = await launch_subagent(2, context='go')\nprint('got', r)")
  assert outcome.status is CellStatus.SUSPENDED
  [spawn] = tree.spawned(outcome)
  assert spawn.depth == 1 and spawn.prompt.goal == "Gain 2 points. go"
  child = tree.nodes[spawn.key]
  assert child.run_cell("add(2)\nfinish('did it')").status is CellStatus.FINISHED
  outcome = root.resume({spawn.key: "did it"})
  assert (outcome.status, outcome.text) == (CellStatus.OUTPUT, "start\ngot did it\n")


def test_gather_reports_every_spawn_before_any_resolves():
  tree = Tree()
  code = ("async def two(t):\n  a = await launch_subagent(t)\n  b = await launch_subagent(t + 10)\n"
          "  return [a, b]\n"
          "rs = await asyncio.gather(launch_subagent(1), two(2), launch_subagent(3))\nprint(rs)")
  outcome = tree.root.run_cell(code)
  assert outcome.status is CellStatus.SUSPENDED
  first_wave = {spawn.prompt.goal: spawn.key for spawn in tree.spawned(outcome)}
  assert set(first_wave) == {"Gain 1 points.", "Gain 2 points.", "Gain 3 points."}
  # Partial delivery: the coroutine `two` continues and launches its second child.
  outcome = tree.root.resume({first_wave["Gain 2 points."]: "r2"})
  assert outcome.status is CellStatus.SUSPENDED
  [second] = tree.spawned(outcome)
  assert second.prompt.goal == "Gain 12 points."
  outcome = tree.root.resume(
      {first_wave["Gain 1 points."]: "r1", first_wave["Gain 3 points."]: "r3"})
  assert outcome.status is CellStatus.SUSPENDED and outcome.spawns == []
  outcome = tree.root.resume({second.key: "Error: child failed"})
  assert outcome.text == "['r1', ['r2', 'Error: child failed'], 'r3']\n"


def test_children_share_state_by_reference_and_are_judged_from_their_fork():
  tree = Tree(target=1)
  outcome = tree.root.run_cell("r = await launch_subagent(4)")
  [spawn] = tree.spawned(outcome)
  child = tree.nodes[spawn.key]
  child.run_cell("add(4)")
  assert tree.hosts[spawn.key].judge("ok") == 1.0
  assert tree.hosts[0].judge("ok") == 1.0


def test_unawaited_launches_are_rejected():
  tree = Tree()
  outcome = tree.root.run_cell("h = launch_subagent(1)\nprint('done')")
  assert outcome.status is CellStatus.ERROR
  assert "never awaited" in outcome.text and outcome.text.startswith("done\n")
  assert len(tree.nodes) == 1  # No child was created.


def test_launch_errors_and_depth_limit_come_back_as_strings():
  tree = Tree(max_depth=1)
  assert tree.root.run_cell("r = await launch_subagent('bad')\nr").text == (
      "'Error: target must be a non-negative int'\n")
  outcome = tree.root.run_cell("r = await launch_subagent(1)")
  [spawn] = tree.spawned(outcome)
  tree.root.resume({spawn.key: "fine"})
  child = tree.nodes[spawn.key]
  assert spawn.depth == 1 and "delegate" not in spawn.prompt.rules  # No delegation advice at the max depth.
  outcome = child.run_cell("r = await launch_subagent(1)\nprint(r)")
  assert outcome.status is CellStatus.OUTPUT and "refused" in outcome.text and "maximum" in outcome.text


def test_no_launch_subagent_without_delegation():
  outcome = Tree(delegation=False).root.run_cell("launch_subagent(1)")
  assert outcome.status is CellStatus.ERROR and "NameError" in outcome.text


def test_gather_propagates_errors_or_returns_them():
  tree = Tree()
  code = ("async def boom():\n  raise ValueError('x')\n"
          "rs = await asyncio.gather(boom(), asyncio.sleep(0, 'slept'), return_exceptions=True)\n"
          "print([type(r).__name__ for r in rs], rs[1])")
  assert tree.root.run_cell(code).text == "['ValueError', 'str'] slept\n"
  outcome = tree.root.run_cell(
      "async def boom():\n  raise ValueError('x')\nawait asyncio.gather(boom())")
  assert outcome.status is CellStatus.ERROR and outcome.text.endswith("ValueError: x")
  outcome = tree.root.run_cell("await asyncio.gather(1)")
  assert outcome.status is CellStatus.ERROR and "awaitables" in outcome.text
  assert tree.root.run_cell("await asyncio.gather()").status is CellStatus.OUTPUT


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited")
def test_awaiting_foreign_objects_and_asyncio_run_fail_clearly():
  root = Tree().root
  outcome = root.run_cell("class A:\n  pass\nawait A()")
  assert outcome.status is CellStatus.ERROR and "TypeError" in outcome.text
  outcome = root.run_cell("async def f():\n  return 1\nasyncio.run(f())")
  assert outcome.status is CellStatus.ERROR and "use `await`" in outcome.text


def test_output_is_truncated_and_made_utf8_safe():
  root = Tree(max_output_chars=100).root
  outcome = root.run_cell("for i in range(1000): print('line', i)")
  assert outcome.text.startswith("line 0\n")
  assert "[output truncated:" in outcome.text and len(outcome.text) < 200
  outcome = root.run_cell("print('bad \\udcff surrogate')")
  outcome.text.encode("utf-8")
  assert "\\udcff" in outcome.text


def test_hostile_exception_str_does_not_break_the_report():
  outcome = Tree().root.run_cell(
      "class E(Exception):\n  def __str__(self):\n    raise E()\nraise E()")
  assert outcome.status is CellStatus.ERROR and outcome.text.endswith("E: <exception message unavailable>")


def test_random_is_per_node_and_seeded():
  tree = Tree()
  first = tree.root.run_cell("import random\n[random.randint(0, 99) for _ in range(5)]").text
  other = Tree().root.run_cell("import random\n[random.randint(0, 99) for _ in range(5)]").text
  assert first == other


def test_cell_classes_may_set_attributes_but_shared_ones_may_not():
  root = Tree().root
  code = ("class C:\n  def __init__(self):\n    self.n = 1\nc = C()\nc.n += 1\nc.m: int = 5\n"
          "del c.m\nc.n")
  assert root.run_cell(code).text == "2\n"
  outcome = root.run_cell("import json\njson.dumps.x = 1")
  assert outcome.status is CellStatus.ERROR and "did not create" in outcome.text


def test_launches_per_cell_are_capped():
  outcome = Tree().root.run_cell("while True:\n  launch_subagent(1)")
  assert outcome.status is CellStatus.ERROR and "at most" in outcome.text


def test_gathered_tasks_per_cell_are_capped():
  outcome = Tree().root.run_cell("await asyncio.gather(*[asyncio.sleep(0) for _ in range(20000)])")
  assert outcome.status is CellStatus.ERROR and "at most" in outcome.text
  assert Tree().root.run_cell("r = await asyncio.gather(*[asyncio.sleep(0, i) for i in range(50)])"
                              "\nsum(r)").text == "1225\n"
