r"""Execution-tree viewer: renders the rollout engine's trees as one self-contained HTML page.

  python -m rao_jax.viz --trees run/trees.jsonl [--out run/trees.html] [--max_trees 16]

The input is `Trees.to_jsonl` output: one JSON object per tree, `{"tree", "group", "nodes": [...]}`,
each node carrying its parent's id (−1 for the root) and the parent's cell that launched it. Children
are drawn below their parent, grouped by that cell: siblings launched by one cell sit side by side,
groups from successive cells follow one another downwards. Clicking a node shows its goal, finish
value, counters and every turn in a side panel.

Everything in the trees came from the model and is treated as hostile: the data is embedded as JSON
with `<`, `>` and `&` written as `\u003c` escapes (no string in it can close the `<script>` block), and
the page's script writes it only through `textContent`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

_INT_FIELDS = ("depth", "num_children", "launch_cell", "steps", "tokens_generated", "first_round",
               "last_round", "first_step", "last_step")
_STR_FIELDS = ("end_reason", "goal")
_TURN_STR_FIELDS = ("completion", "observation", "status")
# Written as \uXXXX inside the embedded JSON: the HTML tokenizer must never see a tag or an entity.
_SCRIPT_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                   ("\u2029", "\\u2029"))


class TreesFileError(ValueError):
  """A trees file that cannot be drawn; the message names the file, the line and the node."""


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _reject_constant(name: str) -> float:
  raise ValueError(f"non-finite number {name} (not valid JSON)")


def _check_node(node: Any, where: str) -> None:
  if not isinstance(node, dict):
    raise TreesFileError(f"{where}: a node must be a JSON object, got {type(node).__name__}")
  for field in ("id", "parent"):
    if not _is_int(node.get(field)):
      raise TreesFileError(f"{where}: node field {field!r} must be an integer, got {node.get(field)!r}")
  where = f"{where}, node {node['id']}"
  for field in _INT_FIELDS:
    if field in node and not _is_int(node[field]):
      raise TreesFileError(f"{where}: field {field!r} must be an integer, got {node[field]!r}")
  for field in _STR_FIELDS:
    if field in node and not isinstance(node[field], str):
      raise TreesFileError(f"{where}: field {field!r} must be a string, got {node[field]!r}")
  success = node.get("success", 0.0)  # null: a non-finite success (`Trees.to_jsonl` writes NaN so)
  if success is not None and (not isinstance(success, (int, float)) or isinstance(success, bool)):
    raise TreesFileError(f"{where}: field 'success' must be a number or null, got {success!r}")
  turns = node.get("turns", [])
  if not isinstance(turns, list):
    raise TreesFileError(f"{where}: field 'turns' must be a list")
  for k, turn in enumerate(turns, start=1):
    if not isinstance(turn, dict):
      raise TreesFileError(f"{where}, turn {k}: a turn must be a JSON object")
    for field in _TURN_STR_FIELDS:
      if field in turn and not isinstance(turn[field], str):
        raise TreesFileError(f"{where}, turn {k}: field {field!r} must be a string")
    launched = turn.get("launched", [])
    if not isinstance(launched, list) or not all(_is_int(c) for c in launched):
      raise TreesFileError(f"{where}, turn {k}: field 'launched' must be a list of node ids")


def _check_tree(tree: Any, where: str) -> None:
  """Field types, unique ids, one root, every parent in the tree and every node reachable from the root."""
  if not isinstance(tree, dict):
    raise TreesFileError(f"{where}: expected a JSON object per line, got {type(tree).__name__}")
  if not _is_int(tree.get("tree")):
    raise TreesFileError(f"{where}: field 'tree' must be an integer, got {tree.get('tree')!r}")
  if "group" in tree and not _is_int(tree["group"]):
    raise TreesFileError(f"{where}: field 'group' must be an integer, got {tree['group']!r}")
  nodes = tree.get("nodes")
  if not isinstance(nodes, list) or not nodes:
    raise TreesFileError(f"{where}: field 'nodes' must be a non-empty list")
  for node in nodes:
    _check_node(node, where)
  ids = [n["id"] for n in nodes]
  if len(set(ids)) != len(ids):
    duplicate = next(i for i in ids if ids.count(i) > 1)
    raise TreesFileError(f"{where}: node id {duplicate} appears more than once")
  roots = [n["id"] for n in nodes if n["parent"] == -1]
  if len(roots) != 1:
    raise TreesFileError(f"{where}: a tree needs exactly one root (parent -1), found {len(roots)}")
  known = set(ids)
  for node in nodes:
    if node["parent"] != -1 and node["parent"] not in known:
      raise TreesFileError(f"{where}, node {node['id']}: parent {node['parent']} is not in this tree")
  children = _children_by_parent(nodes)
  reached, stack = set(), [roots[0]]
  while stack:
    node_id = stack.pop()
    reached.add(node_id)
    stack.extend(children.get(node_id, ()))
  if reached != known:
    raise TreesFileError(f"{where}: nodes {sorted(known - reached)} form a cycle, unreachable from the root")


def _children_by_parent(nodes: Sequence[dict[str, Any]]) -> dict[int, list[int]]:
  children: dict[int, list[int]] = {}
  for node in nodes:
    if node["parent"] != -1:
      children.setdefault(node["parent"], []).append(node["id"])
  return children


def load_trees(path: str, max_trees: int | None = None) -> list[dict[str, Any]]:
  """Reads and validates the first `max_trees` trees (all if None) of a JSON Lines trees file."""
  trees: list[dict[str, Any]] = []
  first_line_of: dict[int, int] = {}
  with open(path, "rb") as f:
    for line_number, raw_line in enumerate(f, start=1):
      if max_trees is not None and len(trees) >= max_trees:
        break
      if not raw_line.strip():
        continue
      where = f"{path}, line {line_number}"
      try:
        tree = json.loads(raw_line.decode("utf-8"), parse_constant=_reject_constant)
      except ValueError as e:  # UnicodeDecodeError and json.JSONDecodeError included
        raise TreesFileError(f"{where}: not valid JSON: {e}") from None
      _check_tree(tree, where)
      if tree["tree"] in first_line_of:
        raise TreesFileError(f"{where}: tree {tree['tree']} already appeared on line "
                             f"{first_line_of[tree['tree']]}")
      first_line_of[tree["tree"]] = line_number
      trees.append(tree)
  if not trees:
    raise TreesFileError(f"{path}: no trees in the file")
  return trees


def launch_groups(nodes: Sequence[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
  """Per parent id, its children grouped by launching cell, in cell order, ids ascending in a group.

  A group is `{"cell": c (None if unknown), "children": [ids], "parallel": bool}`; `parallel` is true
  when two or more of its children generated and all of those share a decode round (their
  [first_round, last_round] intervals intersect): they demonstrably ran at the same time. A cell can
  also await its launches one after another, so sharing a cell alone does not make siblings parallel.
  """
  by_id = {n["id"]: n for n in nodes}
  groups: dict[int, list[dict[str, Any]]] = {}
  for parent, child_ids in _children_by_parent(nodes).items():
    by_cell: dict[int | None, list[int]] = {}
    for child in sorted(child_ids):
      cell = by_id[child].get("launch_cell", -1)
      by_cell.setdefault(cell if cell > 0 else None, []).append(child)
    cells = sorted(by_cell, key=lambda c: (c is None, c or 0))
    groups[parent] = [{"cell": c, "children": by_cell[c], "parallel": _ran_together(
        [by_id[i] for i in by_cell[c]])} for c in cells]
  return groups


def _ran_together(siblings: Sequence[dict[str, Any]]) -> bool:
  spans = [(n["first_round"], n["last_round"]) for n in siblings
           if n.get("first_round", -1) >= 0 and n.get("last_round", -1) >= 0]
  return len(spans) >= 2 and max(s[0] for s in spans) <= min(s[1] for s in spans)


def _success(node: dict[str, Any]) -> float | None:
  """A node's success (0 if absent), None if the file has null there (a NaN or infinite success)."""
  success = node.get("success", 0.0)
  return None if success is None else float(success)


def tree_summary(tree: dict[str, Any]) -> dict[str, Any]:
  """Counts for a tree's summary line: nodes, max depth, root outcome, successes, model tokens.

  A null (non-finite) success stays None as the root's and does not count as a success.
  """
  nodes = tree["nodes"]
  root = next(n for n in nodes if n["parent"] == -1)
  children = _children_by_parent(nodes)
  depth, frontier = 0, children.get(root["id"], [])
  while frontier:
    depth += 1
    frontier = [c for p in frontier for c in children.get(p, [])]
  return {
      "nodes": len(nodes), "depth": depth, "root": root["id"],
      "root_success": _success(root), "root_end_reason": root.get("end_reason", "?"),
      "succeeded": sum(1 for n in nodes if (_success(n) or 0.0) > 0),
      "tokens": sum(n.get("tokens_generated", 0) for n in nodes),
  }


def embed_json(value: Any) -> str:
  """`value` as JSON safe inside `<script type="application/json">`: no `<`, `>` or `&` left raw."""
  text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
  for raw, escaped in _SCRIPT_ESCAPES:  # str.replace runs in C; str.translate maps char by char
    text = text.replace(raw, escaped)
  return text


def render_html(trees: Sequence[dict[str, Any]], source: str = "") -> str:
  """The viewer page for `trees` (validated by `load_trees`); `source` is shown as the page title."""
  payload = {
      "source": source,
      "trees": [{"tree": t["tree"], "group": t.get("group", -1), "nodes": t["nodes"],
                 "groups": {str(p): g for p, g in launch_groups(t["nodes"]).items()},
                 "summary": tree_summary(t)} for t in trees],
  }
  return _TEMPLATE.replace("__TREES_JSON__", embed_json(payload), 1)


def write_html(trees_path: str, out_path: str | None = None, max_trees: int | None = None) -> str:
  """Renders `trees_path` to `out_path` (default: the input's name with `.html`); returns the path."""
  out_path = out_path or os.path.splitext(trees_path)[0] + ".html"
  if os.path.abspath(out_path) == os.path.abspath(trees_path):
    raise TreesFileError(f"{trees_path}: the output would overwrite the input; pass --out")
  trees = load_trees(trees_path, max_trees)
  page = render_html(trees, source=os.path.basename(trees_path))
  with open(out_path, "w", encoding="utf-8") as f:
    f.write(page)
  return out_path


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m rao_jax.viz",
                                   description="Renders execution trees (JSON Lines) as one HTML page.")
  parser.add_argument("--trees", required=True, help="trees JSON Lines file (Trees.to_jsonl)")
  parser.add_argument("--out", help="HTML file to write (default: next to --trees, with .html)")
  parser.add_argument("--max_trees", type=int, help="draw only the file's first N trees")
  args = parser.parse_args(argv)
  if args.max_trees is not None and args.max_trees < 1:
    parser.error("--max_trees must be at least 1")
  try:
    out = write_html(args.trees, args.out, args.max_trees)
  except (OSError, TreesFileError) as e:
    parser.exit(2, f"error: {e}\n")
  print(f"wrote {out}")
  return 0


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
  content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>execution trees</title>
<style>
body { margin: 0; font: 13px/1.4 system-ui, sans-serif; color: #222; display: flex; height: 100vh; }
nav { width: 250px; overflow-y: auto; border-right: 1px solid #ccc; background: #f7f7f7; flex: none; }
nav h1 { font-size: 14px; margin: 8px; word-break: break-all; }
nav button { display: block; width: 100%; text-align: left; border: 0; border-top: 1px solid #e2e2e2;
  background: none; padding: 6px 8px; font: inherit; cursor: pointer; }
nav button.current { background: #dde8f7; }
main { flex: 1; min-width: 0; overflow: auto; padding: 10px; }
aside { width: 42%; overflow-y: auto; border-left: 1px solid #ccc; padding: 0 10px; flex: none; }
.summary { font-weight: 600; margin-bottom: 8px; }
.legend span { display: inline-block; padding: 0 6px; margin: 0 4px 8px 0; border: 1px solid;
  border-radius: 4px; }
.subtree { display: flex; flex-direction: column; align-items: flex-start; }
.launches { display: flex; flex-direction: column; gap: 8px; margin: 6px 0 0 14px; padding-left: 10px;
  border-left: 2px solid #999; }
.launch { border: 1px dashed #999; border-radius: 6px; padding: 3px 6px 6px; }
.launch-label { font-size: 11px; color: #555; margin-bottom: 4px; }
.launch-row { display: flex; gap: 8px; align-items: flex-start; }
.node { display: block; width: 210px; text-align: left; font: inherit; padding: 4px 6px; cursor: pointer;
  border: 2px solid; border-radius: 6px; }
.node span { display: block; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.node .head { font-weight: 600; }
.node .stats { color: #444; font-size: 11px; }
.node.selected { outline: 3px solid #1d5fbf; outline-offset: 1px; }
.ok { background: #d8f3d8; border-color: #2e8b2e; }
.partial { background: #f1f3c8; border-color: #9a9a22; }
.fail { background: #f8d7d7; border-color: #c03030; }
.unfinished { background: #e6e6e6; border-color: #888; }
.crashed { background: #e6e6e6; border-color: #c03030; border-style: dashed; }
aside h2 { font-size: 15px; margin: 10px 0 4px; }
aside h3 { font-size: 13px; margin: 12px 0 4px; }
aside table { border-collapse: collapse; }
aside td { padding: 1px 10px 1px 0; vertical-align: top; }
aside a { color: #1d5fbf; cursor: pointer; text-decoration: underline; margin-right: 6px; }
pre { white-space: pre-wrap; word-break: break-word; background: #f4f4f4; border: 1px solid #ddd;
  padding: 6px; margin: 2px 0 6px; max-height: 420px; overflow: auto; }
.turn { border-top: 1px solid #ddd; padding-top: 4px; }
.muted { color: #777; }
</style></head>
<body>
<nav id="tree-list"></nav>
<main id="canvas"></main>
<aside id="details"><p class="muted">Click a node to see its goal, result and turns.</p></aside>
<script type="application/json" id="trees-data">__TREES_JSON__</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("trees-data").textContent);
const REASON_CLASS = {STEP_LIMIT: "unfinished", CONTEXT_OVERFLOW: "unfinished", TIMEOUT: "unfinished",
                      TREE_BUDGET: "unfinished", CRASHED: "crashed"};
let current = null;  // {tree, byId, boxes}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = String(text);
  return e;
}
function num(x, digits) { return typeof x === "number" ? x.toFixed(digits) : "?"; }
function successText(x, digits) { return x === null ? "n/a" : num(x, digits); }  // null: non-finite
function outcomeClass(node) {
  if (node.end_reason !== "FINISHED") return REASON_CLASS[node.end_reason] || "unfinished";
  return node.success >= 1 ? "ok" : node.success > 0 ? "partial" : "fail";
}
function summaryText(t) {
  const s = t.summary;
  return `tree ${t.tree} · group ${t.group} · root ${s.root_end_reason} s=${successText(s.root_success, 2)} · ` +
         `${s.nodes} nodes · depth ${s.depth} · ${s.succeeded}/${s.nodes} succeeded · ${s.tokens} tokens`;
}

function nodeBox(node) {
  const box = el("button", "node " + outcomeClass(node));
  box.append(el("span", "head", `#${node.id} · ${node.end_reason ?? "?"}`));
  box.append(el("span", "goal", node.goal ?? ""));
  box.append(el("span", "stats", `s=${successText(node.success, 2)} · ${node.steps ?? "?"} steps · ` +
                                 `${node.tokens_generated ?? "?"} tok · ` +
                                 `rounds ${node.first_round ?? "?"}–${node.last_round ?? "?"}`));
  box.title = node.goal ?? "";
  box.addEventListener("click", () => selectNode(node.id));
  current.boxes.set(node.id, box);
  return box;
}

function subtree(id) {
  const wrap = el("div", "subtree");
  wrap.append(nodeBox(current.byId.get(id)));
  const groups = current.tree.groups[String(id)] || [];
  if (groups.length) {
    const launches = el("div", "launches");
    for (const g of groups) {
      const n = g.children.length;
      const what = n === 1 ? "1 sub-agent" : g.parallel ? `${n} in parallel` : `${n} sub-agents`;
      const group = el("div", "launch");
      group.append(el("div", "launch-label", `${g.cell === null ? "cell ?" : "cell " + g.cell}: ${what}`));
      const row = el("div", "launch-row");
      for (const child of g.children) row.append(subtree(child));
      group.append(row);
      launches.append(group);
    }
    wrap.append(launches);
  }
  return wrap;
}

function showTree(index) {
  const tree = DATA.trees[index];
  current = {tree, byId: new Map(tree.nodes.map(n => [n.id, n])), boxes: new Map()};
  document.querySelectorAll("nav button").forEach((b, i) => b.classList.toggle("current", i === index));
  const canvas = document.getElementById("canvas");
  canvas.replaceChildren(el("div", "summary", summaryText(tree)));
  const legend = el("div", "legend");
  for (const [cls, label] of [["ok", "success"], ["partial", "partial success"], ["fail", "failed"],
                              ["unfinished", "unfinished (limit)"], ["crashed", "crashed"]]) {
    legend.append(el("span", cls, label));
  }
  canvas.append(legend, subtree(tree.summary.root));
  selectNode(tree.summary.root);
}

function link(id) {
  const a = el("a", null, `#${id}`);
  a.addEventListener("click", () => selectNode(id));
  return a;
}
function section(title, text) {
  const frag = document.createDocumentFragment();
  frag.append(el("h3", null, title), el("pre", null, text));
  return frag;
}
function valueText(v) {
  return v == null ? "(none)" : typeof v === "string" ? v : JSON.stringify(v, null, 2);
}

function selectNode(id) {
  const node = current.byId.get(id);
  current.boxes.forEach((box, boxId) => box.classList.toggle("selected", boxId === id));
  const panel = document.getElementById("details");
  panel.replaceChildren(el("h2", null, `Node #${id} · ${node.end_reason ?? "?"}`));
  const rows = [
      ["tree / depth", `${current.tree.tree} / ${node.depth ?? "?"}`],
      ["success", successText(node.success, 3)],
      ["steps (cells)", node.steps], ["tokens generated", node.tokens_generated],
      ["decode rounds", `${node.first_round ?? "?"} – ${node.last_round ?? "?"}`],
      ["decode steps", `${node.first_step ?? "?"} – ${node.last_step ?? "?"}`],
      ["launched by", node.parent === -1 ? "(root)" : `cell ${node.launch_cell} of #${node.parent}`]];
  const table = el("table");
  for (const [k, v] of rows) {
    const tr = el("tr");
    tr.append(el("td", "muted", k), el("td", null, v ?? "?"));
    table.append(tr);
  }
  const nav = el("p");
  if (node.parent !== -1) nav.append("parent: ", link(node.parent));
  const kids = (current.tree.groups[String(id)] || []).flatMap(g => g.children);
  if (kids.length) { nav.append(" children: "); kids.forEach(c => nav.append(link(c))); }
  panel.append(table, nav, section("Goal", node.goal ?? "(none)"),
               section("Finish value", valueText(node.finish_value)));
  const turns = node.turns || [];
  panel.append(el("h3", null, `Turns (${turns.length})`));
  turns.forEach((turn, k) => {
    const div = el("div", "turn");
    const head = el("div", null, `cell ${k + 1} · ${turn.status ?? "?"}`);
    if (turn.launched && turn.launched.length) {
      head.append(" · launched ");
      turn.launched.forEach(c => head.append(current.byId.has(c) ? link(c) : `#${c} `));
    }
    div.append(head, el("div", "muted", "completion"), el("pre", null, turn.completion ?? ""),
               el("div", "muted", "observation"), el("pre", null, turn.observation ?? ""));
    panel.append(div);
  });
}

const list = document.getElementById("tree-list");
list.append(el("h1", null, `${DATA.trees.length} trees · ${DATA.source}`));
DATA.trees.forEach((t, i) => {
  const b = el("button", null, summaryText(t));
  b.addEventListener("click", () => showTree(i));
  list.append(b);
});
document.title = `${DATA.source} · execution trees`;
showTree(0);
</script>
</body></html>
"""


if __name__ == "__main__":
  sys.exit(main())
