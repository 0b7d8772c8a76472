"""scripts/chained_child_errors.py: each child of a hand-written trees file lands in the class it should."""
import json

import pytest

from rao_jax.envs.chained_research.questions import build_splits


@pytest.fixture(scope="module")
def script(load_script):
  return load_script("chained_child_errors")


def _child(id_, goal, observation, finish, success):
  return {"id": id_, "parent": 0, "goal": goal + "\nParent goals: a question", "success": success,
          "finish_value": finish, "turns": [{"completion": "", "observation": observation}]}


def _trees(task):
  start, relation, attribute = task.hops[0], task.hops[1], task.hops[-1]
  seen = lambda hop: f"['{hop.entity}: ... {hop.answers[0]}.']"
  children = [
      _child(1, start.question, seen(start), start.answers[0], 1.0),                 # exact
      _child(2, relation.question, seen(relation) + " ['Other Name']", "Other Name", 0.0),  # copy in obs
      _child(3, attribute.question, seen(attribute), "not there at all", 0.0),        # not in obs
      _child(4, attribute.question, "['Nothing: relevant.']", "Nothing", 0.0),         # answer unseen
      _child(5, "In which city was Nobody At All born?", "[]", None, 0.0),            # goal not canonical
  ]
  root = {"id": 0, "parent": -1, "goal": task.question, "success": 0.0, "finish_value": None, "turns": []}
  return [{"tree": 0, "group": 0, "difficulty": task.difficulty, "nodes": [root] + children}]


def test_every_class_and_kind(script, tmp_path, capsys):
  task = next(t for t in build_splits("tiny")["val"] if t.difficulty == "2hop")
  path = tmp_path / "trees.jsonl"
  path.write_text("".join(json.dumps(t) + "\n" for t in _trees(task)))
  assert script.main(["--trees", str(path), "--json"]) == 0
  rows = json.loads(capsys.readouterr().out)
  assert rows["start"]["exact"] == 1
  assert rows["relation"]["wrong, copy in obs"] == 1
  assert rows["attribute"]["wrong, not in obs"] == 1 and rows["attribute"]["wrong, answer unseen"] == 1
  assert rows["unknown"]["goal not canonical"] == 1
  assert sum(rows["all"].values()) == 5 and all(rows["all"][c] == 1 for c in script.CLASSES)
  assert script.main(["--trees", str(path)]) == 0
  table = capsys.readouterr().out.splitlines()
  assert table[0].startswith("| child kind | exact |") and table[-1] == "| all | 1 | 1 | 1 | 1 | 1 | 5 |"


def test_unreadable_input_is_an_error(script, tmp_path, capsys):
  assert script.main(["--trees", str(tmp_path / "missing.jsonl")]) == 2
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"tree": 0, "nodes": [{"id": 1}]}\n')
  assert script.main(["--trees", str(bad)]) == 2
  assert "not a trees file" in capsys.readouterr().err
