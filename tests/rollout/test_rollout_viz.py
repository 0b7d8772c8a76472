"""The execution-tree viewer: layout groups, summaries, escaping of hostile text, input validation."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from rao_jax import viz
from rao_jax.rollout.trees import EndReason, Trees, concatenate_sequences, read_jsonl

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOSTILE = "</script><img src=x onerror=alert(1)> &amp; <!-- \u2028"


def _turn(completion, observation, status, launched=None):
  turn = {"completion": completion, "observation": observation, "status": status}
  if launched:
    turn["launched"] = launched
  return turn


def _trees() -> Trees:
  """Tree 0: root 0 launches 1 and 2 together from cell 2, then 3 from cell 4; tree 1 is a lone root.

  Node 1 carries hostile text in every string field (goal, completion, observation, finish value).
  """
  columns = {  # per node:  0       1       2       3       4
      "tree":             [0,      0,      0,      0,      1],
      "group":            [0,      0,      0,      0,      0],
      "parent":           [-1,     0,      0,      0,      -1],
      "depth":            [0,      1,      1,      1,      0],
      "success":          [1.0,    1.0,    0.0,    0.0,    0.0],
      "num_children":     [3,      0,      0,      0,      0],
      "launch_cell":      [-1,     2,      2,      4,      -1],
      "end_reason":       [EndReason.FINISHED, EndReason.FINISHED, EndReason.FINISHED,
                           EndReason.STEP_LIMIT, EndReason.CRASHED],
      "steps":            [5,      1,      2,      3,      1],
      "tokens_generated": [400,    50,     90,     120,    30],
      "first_round":      [0,      3,      3,      9,      0],
      "last_round":       [14,     5,      7,      12,     1],
      "first_step":       [0,      30,     30,     90,     0],
      "last_step":        [140,    50,     70,     120,    10],
  }
  root_turns = [_turn("<thought>look</thought>\n<python>\nprint(1)\n</python>", "[Cell 1 Output]\n1",
                      "output"),
                _turn("<python>await gather(a, b)</python>", "[Cell 2 Output]\nok", "output", [1, 2]),
                _turn("<python>x</python>", "[Cell 3 Output]\n(no output)", "output"),
                _turn("<python>await c</python>", "[Cell 4 Output]\nok", "output", [3]),
                _turn("<python>finish('done')</python>", "[Cell 5 Output]\n", "finished")]
  records = (
      {"goal": "Craft the following items: 2x m0_i5", "turns": root_turns, "finish_value": "done",
       "children": [1, 2, 3]},
      {"goal": f"goal {HOSTILE}",
       "turns": [_turn(f"<python>print('{HOSTILE}')</python>", HOSTILE, "finished")],
       "finish_value": {"note": HOSTILE, "n": [1, 2]}, "children": []},
      {"goal": "sub-goal b", "turns": [_turn("a", "b", "output"), _turn("c", "d", "finished")],
       "finish_value": None, "children": []},
      {"goal": "sub-goal c", "turns": [_turn("e", "f", "format_error")] * 3, "finish_value": None,
       "children": []},
      {"goal": "second tree", "turns": [_turn("g", "h", "crashed")], "finish_value": None, "children": []},
  )
  sequences = [(np.arange(3), np.array([0, 1, 1], bool), np.zeros(3))] * 5
  offsets, tokens, mask, log_probs = concatenate_sequences(sequences)
  return Trees(**{k: np.asarray(v) for k, v in columns.items()}, token_offsets=offsets, tokens=tokens,
               loss_mask=mask, sampler_log_probs=log_probs, records=records)


@pytest.fixture
def trees_path(tmp_path):
  path = str(tmp_path / "trees.jsonl")
  _trees().to_jsonl(path)
  return path


def _embedded(page: str) -> dict:
  match = re.search(r'<script type="application/json" id="trees-data">(.*?)</script>', page, re.S)
  assert match, "no data block"
  return json.loads(match.group(1))


def test_launch_groups_split_by_cell_and_flag_concurrency():
  nodes = _trees().tree_dicts()[0]["nodes"]
  assert viz.launch_groups(nodes) == {0: [{"cell": 2, "children": [1, 2], "parallel": True},
                                          {"cell": 4, "children": [3], "parallel": False}]}
  # One cell awaiting its launches one after another: same group, but not shown as parallel.
  nodes[2]["first_round"] = 6
  assert viz.launch_groups(nodes)[0][0] == {"cell": 2, "children": [1, 2], "parallel": False}


def test_tree_summary():
  first, second = _trees().tree_dicts()
  assert viz.tree_summary(first) == {"nodes": 4, "depth": 1, "root": 0, "root_success": 1.0,
                                     "root_end_reason": "FINISHED", "succeeded": 2, "tokens": 660}
  assert viz.tree_summary(second)["root_end_reason"] == "CRASHED"


def test_main_writes_page_with_every_node_and_no_raw_hostile_markup(trees_path):
  assert viz.main(["--trees", trees_path]) == 0
  out = trees_path[:-len(".jsonl")] + ".html"
  page = open(out, encoding="utf-8").read()
  assert "</script><img" not in page and "<img" not in page and "<!--" not in page
  assert page.count("</script>") == 2  # the data block's and the program's own
  assert "innerHTML" not in page and "http" not in page.replace("http-equiv", "")
  data = _embedded(page)
  assert [t["tree"] for t in data["trees"]] == [0, 1]
  expected = _trees().tree_dicts()
  for tree, want in zip(data["trees"], expected):
    assert [n["id"] for n in tree["nodes"]] == [n["id"] for n in want["nodes"]]
    assert tree["nodes"] == json.loads(json.dumps(want["nodes"]))  # every field, text round-trips exactly
  hostile_node = data["trees"][0]["nodes"][1]
  assert hostile_node["turns"][0]["observation"] == HOSTILE
  assert hostile_node["finish_value"]["note"] == HOSTILE
  assert data["trees"][0]["groups"] == {"0": [{"cell": 2, "children": [1, 2], "parallel": True},
                                              {"cell": 4, "children": [3], "parallel": False}]}


def test_module_runs_as_script_with_out_and_max_trees(trees_path, tmp_path):
  out = str(tmp_path / "page.html")
  env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.run([sys.executable, "-m", "rao_jax.viz", "--trees", trees_path, "--out", out,
                         "--max_trees", "1"], capture_output=True, text=True, env=env, timeout=60)
  assert proc.returncode == 0, proc.stderr
  assert out in proc.stdout
  assert [t["tree"] for t in _embedded(open(out, encoding="utf-8").read())["trees"]] == [0]

  bad = tmp_path / "bad.jsonl"
  bad.write_text(open(trees_path).readline() + "{not json\n")
  proc = subprocess.run([sys.executable, "-m", "rao_jax.viz", "--trees", str(bad)],
                        capture_output=True, text=True, env=env, timeout=60)
  assert proc.returncode == 2 and "line 2: not valid JSON" in proc.stderr
  assert not (tmp_path / "bad.html").exists()


def _good_line() -> dict:
  return _trees().tree_dicts()[0]


def _broken(edit):
  tree = _good_line()
  edit(tree)
  return json.dumps(tree)


@pytest.mark.parametrize("bad_line, message", [
    ("{not json", r"line 2: not valid JSON"),
    ('{"tree": 1, "nodes": [{"id": 0, "parent": -1, "success": NaN}]}',
     r"line 2: not valid JSON: non-finite"),
    ("[1, 2]", r"line 2: expected a JSON object per line, got list"),
    ('{"tree": 1, "nodes": []}', r"line 2: field 'nodes' must be a non-empty list"),
    (_broken(lambda t: t.update(tree="3")), r"line 2: field 'tree' must be an integer"),
    (_broken(lambda t: t["nodes"][1].pop("parent")), r"line 2: node field 'parent' must be an integer"),
    (_broken(lambda t: t["nodes"][2].update(steps="2")), r"line 2, node 2: field 'steps' must be an integer"),
    (_broken(lambda t: t["nodes"][2].update(success=True)),
     r"line 2, node 2: field 'success' must be a number"),
    (_broken(lambda t: t["nodes"][1]["turns"].append("x")), r"line 2, node 1, turn 2: a turn must be a JSON"),
    (_broken(lambda t: t["nodes"][0]["turns"][1].update(launched=["1"])),
     r"line 2, node 0, turn 2: field 'launched'"),
    (_broken(lambda t: t["nodes"][3].update(id=2)), r"line 2: node id 2 appears more than once"),
    (_broken(lambda t: t["nodes"][3].update(parent=-1)), r"line 2: a tree needs exactly one root .* found 2"),
    (_broken(lambda t: t["nodes"][3].update(parent=7)), r"line 2, node 3: parent 7 is not in this tree"),
    (_broken(lambda t: (t["nodes"][1].update(parent=2), t["nodes"][2].update(parent=1))),
     r"line 2: nodes \[1, 2\] form a cycle"),
    (_broken(lambda t: t.update(tree=0)), r"line 3: tree 0 already appeared on line 1"),
])
def test_malformed_input_names_the_line(tmp_path, bad_line, message):
  path = tmp_path / "trees.jsonl"
  second_tree = _trees().tree_dicts()[1]
  lines = [json.dumps(second_tree), bad_line] if "already appeared" not in message else [
      json.dumps(_good_line()), "", bad_line]
  path.write_text("\n".join(lines) + "\n")
  with pytest.raises(viz.TreesFileError, match=message):
    viz.load_trees(str(path))


def test_empty_file_bad_encoding_and_output_over_input_are_rejected(tmp_path, trees_path):
  empty = tmp_path / "empty.jsonl"
  empty.write_text("\n")
  with pytest.raises(viz.TreesFileError, match="no trees"):
    viz.load_trees(str(empty))
  latin1 = tmp_path / "latin1.jsonl"
  latin1.write_bytes(b'{"tree": 0, "nodes": [{"id": 0, "parent": -1, "goal": "caf\xe9"}]}\n')
  with pytest.raises(viz.TreesFileError, match="line 1: not valid JSON: 'utf-8' codec"):
    viz.load_trees(str(latin1))
  with pytest.raises(viz.TreesFileError, match="overwrite the input"):
    viz.write_html(trees_path, out_path=trees_path)


# A minimal DOM for node.js: enough to run the page's script, click every node and read the side panel.
# Setting innerHTML/outerHTML or calling insertAdjacentHTML/document.write throws, so the page cannot
# pass while parsing data as markup.
_DOM_SHIM = r"""
const html = require("fs").readFileSync(process.argv[1], "utf8");
const data = /<script type="application\/json" id="trees-data">([\s\S]*?)<\/script>/.exec(html)[1];
const program = /<script>([\s\S]*?)<\/script>/.exec(html)[1];
const forbidden = () => { throw new Error("markup parsing used"); };
class El {
  constructor(tag) { this.tag = tag; this.kids = []; this.on = {}; this.className = ""; this.title = "";
                     this.classList = {toggle: (c, on) => { const s = new Set(this.className.split(" "));
                       on ? s.add(c) : s.delete(c); this.className = [...s].join(" "); }}; }
  append(...xs) { for (const x of xs) {
    if (x instanceof El && x.tag === "#fragment") this.kids.push(...x.kids);
    else this.kids.push(x instanceof El ? x : String(x)); } }
  replaceChildren(...xs) { this.kids = []; this.append(...xs); }
  addEventListener(type, f) { this.on[type] = f; }
  get textContent() { return this.kids.map(k => typeof k === "string" ? k : k.textContent).join(""); }
  set textContent(v) { this.kids = [String(v)]; }
  set innerHTML(v) { forbidden(); } set outerHTML(v) { forbidden(); } insertAdjacentHTML() { forbidden(); }
  all() { return [this, ...this.kids.filter(k => k instanceof El).flatMap(k => k.all())]; }
}
const byId = {"tree-list": new El("nav"), canvas: new El("main"), details: new El("aside")};
const document = {
  title: "", write: forbidden,
  getElementById: id => id === "trees-data" ? {textContent: data} : byId[id],
  createElement: tag => new El(tag), createDocumentFragment: () => new El("#fragment"),
  querySelectorAll: () => byId["tree-list"].kids.filter(k => k instanceof El && k.tag === "button"),
};
new Function("document", program)(document);
const result = {title: document.title, trees: []};
for (const treeButton of document.querySelectorAll("nav button")) {
  treeButton.on.click();
  const canvas = byId.canvas.all();
  const tree = {summary: canvas.find(e => e.className === "summary").textContent,
                labels: canvas.filter(e => e.className === "launch-label").map(e => e.textContent),
                nodes: {}};
  for (const box of canvas.filter(e => e.tag === "button")) {
    box.on.click();
    tree.nodes[box.kids[0].textContent] = {cls: box.className, panel: byId.details.textContent};
  }
  result.trees.push(tree);
}
console.log(JSON.stringify(result));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node.js not installed")
def test_page_script_renders_text_only(trees_path, tmp_path):
  out = viz.write_html(trees_path)
  proc = subprocess.run(["node", "-e", _DOM_SHIM, out], capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr
  result = json.loads(proc.stdout)
  assert result["title"] == "trees.jsonl · execution trees"
  first, second = result["trees"]
  assert first["summary"].startswith("tree 0 · group 0 · root FINISHED s=1.00 · 4 nodes · depth 1")
  assert first["labels"] == ["cell 2: 2 in parallel", "cell 4: 1 sub-agent"]
  classes = {k: v["cls"].replace(" selected", "") for k, v in first["nodes"].items()}
  assert classes == {"#0 · FINISHED": "node ok", "#1 · FINISHED": "node ok", "#2 · FINISHED": "node fail",
                     "#3 · STEP_LIMIT": "node unfinished"}
  assert {k: v["cls"] for k, v in second["nodes"].items()} == {"#4 · CRASHED": "node crashed selected"}
  panel = first["nodes"]["#1 · FINISHED"]["panel"]
  assert f"goal {HOSTILE}" in panel and f"print('{HOSTILE}')" in panel  # shown verbatim, as text
  assert json.dumps({"note": HOSTILE, "n": [1, 2]}, indent=2, ensure_ascii=False) in panel
  root_panel = first["nodes"]["#0 · FINISHED"]["panel"]
  assert "Turns (5)" in root_panel and "cell 2 · output · launched #1#2" in root_panel
  assert "cell 4 · output · launched #3" in root_panel and "[Cell 5 Output]" in root_panel


def _strict_json(line: str):
  """json.loads as JavaScript's JSON.parse reads: NaN, Infinity and -Infinity are errors."""
  def reject(name):
    raise ValueError(f"{name} is not JSON")
  return json.loads(line, parse_constant=reject)


@pytest.fixture
def nan_trees_path(tmp_path):
  """The test trees with a judge's NaN success at the second tree's root and an infinite one at node 2."""
  trees = _trees()
  success = trees.success.copy()
  success[[2, 4]] = np.inf, np.nan
  records = list(trees.records)
  records[2] = {**records[2], "finish_value": {"score": float("nan"), "n": [1.5, float("-inf")]}}
  path = str(tmp_path / "nan_trees.jsonl")
  Trees(**{**{f: getattr(trees, f) for f in trees.__dataclass_fields__}, "success": success,
           "records": tuple(records)}).to_jsonl(path)
  return path


def test_non_finite_successes_are_written_as_null_and_read_back_as_nan(nan_trees_path):
  with open(nan_trees_path, encoding="utf-8") as f:
    first, second = (_strict_json(line) for line in f)  # valid JSON: the viewer's JSON.parse takes it
  assert [n["success"] for n in first["nodes"]] == [1.0, 1.0, None, 0.0]
  assert second["nodes"][0]["success"] is None
  assert first["nodes"][2]["finish_value"] == {"score": None, "n": [1.5, None]}  # at any depth
  read = read_jsonl(nan_trees_path)
  assert np.isnan(read[1]["nodes"][0]["success"]) and np.isnan(read[0]["nodes"][2]["success"])
  assert read[0]["nodes"][0]["success"] == 1.0
  trees = viz.load_trees(nan_trees_path)
  assert viz.tree_summary(trees[0])["succeeded"] == 2  # a non-finite success is no success
  assert viz.tree_summary(trees[1])["root_success"] is None
  assert [t["tree"] for t in _embedded(viz.render_html(trees))["trees"]] == [0, 1]


@pytest.mark.skipif(shutil.which("node") is None, reason="node.js not installed")
def test_page_shows_a_non_finite_success_as_not_available(nan_trees_path):
  out = viz.write_html(nan_trees_path)
  proc = subprocess.run(["node", "-e", _DOM_SHIM, out], capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr
  first, second = json.loads(proc.stdout)["trees"]
  assert second["summary"].startswith("tree 1 · group 0 · root CRASHED s=n/a · 1 nodes")
  node = first["nodes"]["#2 · FINISHED"]
  assert node["cls"].startswith("node fail ") and "successn/a" in node["panel"], node
