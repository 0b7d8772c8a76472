"""10,000 malformed completions through the turn parser and the interpreter pool, as a rollout would
send them: no node process dies, no call raises, and every result is a well-formed observation.

The seed corpus is the recursive expert's own turns on TextCraft-Synth tasks, rendered as completions;
each fuzzed completion is one to four mutations of a seed: truncation, deleted or repeated spans,
inserted characters (non-ASCII letters usable in identifiers, combining marks, lone surrogates, NUL,
tags, brackets, operators), identifiers swapped for non-ASCII ones, and splices of known-hostile
fragments. Nodes run on real TextCraft roots; a node that suspends gets error strings for its
children at once, and a node that finishes is replaced by a fresh root.
"""
from __future__ import annotations

import random

import pytest

from rao_jax.agent import parsing, turn_format
from rao_jax.agent.interpreter import CellStatus, InterpreterConfig, InterpreterPool

env_lib = pytest.importorskip("rao_jax.envs.textcraft_synth.env")
solvers = pytest.importorskip("rao_jax.envs.textcraft_synth.solvers")
tasks_lib = pytest.importorskip("rao_jax.envs.textcraft_synth.tasks")
world_lib = pytest.importorskip("rao_jax.envs.textcraft_synth.world")

NUM_COMPLETIONS = 10_000
NUM_NODES = 64
ENV_CONFIG = {"world": "small"}
LIMITS = dict(max_depth=3, delegation=True)

INSERTIONS = ["é", "ñ", "α", "変", "ǅ", "\u0301", "\u200b", "\ud800", "\x00", "\t", "\n", "\\",
              "'", '"', "(", ")", "[", "]", "{", "}", ":", "=", "**", "<python>", "</python>",
              "<thought>", "await ", "async ", "lambda ", "yield ", "*", "@", "#", "ﬁ", "Ⅻ"]
NON_ASCII_NAMES = ["café", "naïve", "変数", "ñame", "ǅx", "xⅫ", "Ωmega", "ﬁle"]
HOSTILE = [
    "type(x)('X', (object,), {})", "match x:\n  case object(a=b): pass", "raise ExceptionGroup('g', [ValueError()])",
    "try:\n  1/0\nexcept* ZeroDivisionError:\n  pass", "import copy\ncopy.deepcopy(get_info)",
    "import typing\ntyping.Sequence.register(int)", "import collections\ncollections.namedtuple('P', ['__class__'])",
    "finish(float('inf'))", "await launch_subagent(launch_subagent)", "print('x' * 10**6)",
    "while True: pass", "sum(range(10**6))", "[0] * 10**8", "x = '{0.__class__}'.format(1)",
    "async def f():\n  await f()\nawait f()", "del finish", "finish = 1", "globals", "exit()",
]


def seed_completions() -> list[str]:
  world = world_lib.get_world(ENV_CONFIG["world"])
  tasks = tasks_lib.build_splits(world, tasks_lib.TaskConfig(num_train=12, num_val=0))["train"]
  seeds = []
  for task in tasks:
    transcript = solvers.solve(env_lib.make_root_environment(ENV_CONFIG, task.to_dict()),
                               solvers.RECURSIVE)
    for node in transcript.nodes():
      seeds += [turn_format.render_assistant_turn(turn.thought, turn.code) for turn in node.turns]
  return seeds


def mutate(text: str, rng: random.Random) -> str:
  for _ in range(rng.randint(1, 4)):
    kind = rng.randrange(7)
    at = rng.randrange(len(text) + 1)
    if kind == 0:
      text = text[:at]
    elif kind == 1:
      text = text[:at] + text[at + rng.randint(1, 20):]
    elif kind == 2:
      text = text[:at] + rng.choice(INSERTIONS) * rng.randint(1, 3) + text[at:]
    elif kind == 3:
      text = text[:at] + text[at:at + rng.randint(1, 30)] * rng.randint(2, 5) + text[at:]
    elif kind == 4:
      words = [w for w in text.replace("(", " ").replace("=", " ").split() if w.isidentifier()]
      if words:
        text = text.replace(rng.choice(words), rng.choice(NON_ASCII_NAMES))
    elif kind == 5:
      text = text.replace("</python>", "\n" + rng.choice(HOSTILE) + "\n</python>", 1)
    else:
      text = text[:at] + "(" * rng.randint(50, 300) + text[at:]
  return text


def test_fuzzed_completions_never_kill_a_node():
  rng = random.Random(0)
  seeds = seed_completions()
  world = world_lib.get_world(ENV_CONFIG["world"])
  tasks = [t.to_dict() for t in tasks_lib.build_splits(
      world, tasks_lib.TaskConfig(num_train=NUM_NODES, num_val=0))["train"]]
  config = InterpreterConfig(cell_time_limit_s=0.2, deadline_grace_s=5.0, max_output_chars=512)
  statuses, parse_errors, sent = {status: 0 for status in CellStatus}, 0, 0
  next_root = [-1]

  with InterpreterPool(config) as pool:
    def new_root(slot: int) -> int:
      node = next_root[0]
      next_root[0] -= 1
      [prompt] = pool.create_roots([(node, "textcraft_synth", ENV_CONFIG, tasks[slot])], **LIMITS)
      assert not isinstance(prompt, str), prompt
      return node

    nodes = [new_root(slot) for slot in range(NUM_NODES)]
    while sent + parse_errors < NUM_COMPLETIONS:
      cells = []
      for slot, node in enumerate(nodes):
        parsed = parsing.parse_completion(mutate(rng.choice(seeds), rng))
        if parsed.code is None:
          parse_errors += 1
          assert parsed.error
        else:
          cells.append((slot, node, parsed.code))
      sent += len(cells)
      results = pool.run_cells([(node, code) for _, node, code in cells])
      for (slot, node, _), result in zip(cells, results):
        while result.status is CellStatus.SUSPENDED:
          [result] = pool.resume([(node, {s.child_id: "Error: fuzzed child" for s in result.spawns})])
          pool.release([s.child_id for s in result.spawns])
        statuses[result.status] += 1
        assert isinstance(result.text, str)
        result.text.encode("utf-8")
        if result.status is CellStatus.FINISHED:
          pool.release([node])
          nodes[slot] = new_root(slot)
  assert statuses[CellStatus.CRASHED] == 0, statuses
  assert sent + parse_errors >= NUM_COMPLETIONS
  assert sent > NUM_COMPLETIONS // 2 and statuses[CellStatus.ERROR] > 0 and statuses[CellStatus.OUTPUT] > 0
