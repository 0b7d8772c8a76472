"""scripts/tree_stats.py: per-difficulty counts of a trees file, checked on hand-written trees."""
import json

import pytest


@pytest.fixture(scope="module")
def tree_stats(load_script):
  return load_script("tree_stats")


def _node(id_, parent, tokens, success, *, cell=0, children=0, depth=None):
  return {"id": id_, "parent": parent, "depth": depth if depth is not None else int(parent >= 0),
          "launch_cell": cell, "tokens_generated": tokens, "success": success, "num_children": children}


# Tree 0 ("hard"): a root (10 tokens) whose cell 0 launched two children together (30 and 50 tokens)
# and whose cell 1 launched one (20 tokens): critical path 10 + 50 + 20 = 80, 2 of 3 launches parallel.
# Tree 1 ("easy"): a flat root. Tree 2 ("hard"): a root that launched one child alone.
TREES = [
    {"tree": 0, "group": 0, "difficulty": "hard", "nodes": [
        _node(0, -1, 10, 1.0, children=3), _node(1, 0, 30, 1.0), _node(2, 0, 50, 0.5),
        _node(3, 0, 20, 1.0, cell=1)]},
    {"tree": 1, "group": 1, "difficulty": "easy", "nodes": [_node(4, -1, 40, 0.0)]},
    {"tree": 2, "group": 2, "difficulty": "hard", "nodes": [
        _node(5, -1, 5, None, children=1), _node(6, 5, 7, 0.0)]},
]


def _write(tmp_path, trees):
  path = tmp_path / "trees.jsonl"
  path.write_text("".join(json.dumps(t) + "\n" for t in trees))
  return str(path)


def test_counts_per_difficulty_and_overall(tree_stats, tmp_path, capsys):
  assert tree_stats.main(["--trees", _write(tmp_path, TREES), "--json"]) == 0
  table = json.loads(capsys.readouterr().out)
  assert list(table) == ["easy", "hard", "all"]
  hard = table["hard"]
  assert hard["trees"] == 2 and hard["roots delegating"] == 2
  assert hard["root score"] == 1.0  # a null (NaN) success is left out of the mean
  assert hard["nodes / tree"] == 3.0
  assert hard["child exact"] == pytest.approx(2 / 4)
  assert hard["parallel"] == pytest.approx(2 / 4)
  assert hard["critical path"] == pytest.approx((80 + 12) / 2)
  assert hard["tokens / tree"] == pytest.approx((110 + 12) / 2)
  assert table["easy"] == {"trees": 1, "root score": 0.0, "roots delegating": 0, "nodes / tree": 1.0,
                           "child exact": 0.0, "parallel": 0.0, "critical path": 40.0, "tokens / tree": 40.0}
  assert table["all"]["trees"] == 3 and table["all"]["critical path"] == pytest.approx((80 + 40 + 12) / 3)


def test_prints_a_markdown_table(tree_stats, tmp_path, capsys):
  assert tree_stats.main(["--trees", _write(tmp_path, TREES)]) == 0
  lines = capsys.readouterr().out.strip().split("\n")
  assert lines[0].startswith("| difficulty | trees | root score") and len(lines) == 2 + 3
  assert lines[3].startswith("| hard | 2 | 1.000 | 2 | 3.000 | 0.500 | 0.500 | 46.000 |")


@pytest.mark.parametrize("content", ["", "not json\n", '{"tree": 0}\n'])
def test_bad_files_give_a_clear_error(tree_stats, tmp_path, capsys, content):
  path = tmp_path / "bad.jsonl"
  path.write_text(content)
  assert tree_stats.main(["--trees", str(path)]) == 2
  assert "error:" in capsys.readouterr().err


def test_a_missing_file_gives_a_clear_error(tree_stats, tmp_path, capsys):
  assert tree_stats.main(["--trees", str(tmp_path / "none.jsonl")]) == 2
  assert "cannot read" in capsys.readouterr().err
