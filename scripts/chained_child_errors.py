"""Where the children of chained-research trees fail: the parent's goal, or the child's own copy.

  python scripts/chained_child_errors.py --trees workdir/chained_research_tiny/trees/eval_val_step000000.jsonl
  python scripts/chained_child_errors.py --trees FILE --dataset tiny --split val --json

A child is graded against its goal only if the goal is a canonical sub-question of the split's graph
(`questions.sub_question_answers`, docs/chained_research.md). Every child of the trees file falls in one
of five classes:

  exact                 canonical goal, finished with its answer
  wrong, copy in obs    canonical goal, the answer was in its observations, it finished with another
                        string that is also in them (picked the wrong name or number)
  wrong, not in obs     canonical goal, the answer was in its observations, it finished with a string
                        that is nowhere in them (a name or number made up, or digits reordered)
  wrong, answer unseen  canonical goal, its observations never showed the answer
  goal not canonical    the parent's goal is no sub-question of the graph (a wrong template, or a
                        previous hop's wrong answer); the child scores 0 whatever it does

The counts are per child kind (by the canonical answer's hop: "start" resolves the question's
description, "attribute" reads a number, "relation" follows a link) and in all.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any, Iterable, Mapping

from rao_jax.envs.chained_research.graph import get_graph
from rao_jax.envs.chained_research.questions import PRESETS, SPLITS, question_key, sub_question_answers

CLASSES = ("exact", "wrong, copy in obs", "wrong, not in obs", "wrong, answer unseen", "goal not canonical")
KINDS = ("start", "relation", "attribute", "unknown")


def _kind(goal: str) -> str:
  """The hop kind of a canonical goal by its wording (`facts.py`'s sub-question forms)."""
  if goal.startswith(("How long, in km,", "In what year was", "On what date was")):
    return "attribute"
  if goal.startswith(("Who is the ", "What is the ")) and not goal.startswith(("What is the profession of",
                                                                              "What is the genre of")):
    return "start"
  return "relation"


def classify(node: Mapping[str, Any], table: Mapping[str, tuple[str, ...]]) -> tuple[str, str]:
  """(kind, class) of one child node of a trees file (`Trees.to_jsonl`'s node dicts)."""
  goal = str(node["goal"]).split("\n")[0]
  answers = table.get(question_key(goal))
  if answers is None:
    return "unknown", "goal not canonical"
  kind = _kind(goal)
  if node.get("success") == 1.0:
    return kind, "exact"
  observations = " ".join(str(turn.get("observation", "")) for turn in node.get("turns", ()))
  if not any(answer in observations for answer in answers):
    return kind, "wrong, answer unseen"
  finished = node.get("finish_value")
  copied = finished is not None and str(finished) in observations
  return kind, "wrong, copy in obs" if copied else "wrong, not in obs"


def count(trees: Iterable[Mapping[str, Any]], table: Mapping[str, tuple[str, ...]]) -> dict[str, dict[str, int]]:
  """kind -> class -> number of children, with an "all" row."""
  counts: Counter = Counter()
  for tree in trees:
    for node in tree["nodes"]:
      if node["parent"] >= 0:
        counts[classify(node, table)] += 1
  rows = {kind: {c: counts[kind, c] for c in CLASSES} for kind in KINDS if any(counts[kind, c] for c in CLASSES)}
  rows["all"] = {c: sum(counts[kind, c] for kind in KINDS) for c in CLASSES}
  return rows


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--trees", required=True, help="a Trees.to_jsonl file of chained research trees")
  parser.add_argument("--dataset", default="tiny", choices=sorted(PRESETS), help="the tasks' dataset preset")
  parser.add_argument("--split", default="val", choices=SPLITS, help="the split the trees' tasks come from")
  parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
  args = parser.parse_args(argv)
  try:
    with open(args.trees, encoding="utf-8") as f:
      trees = [json.loads(line) for line in f if line.strip()]
  except (OSError, ValueError) as error:
    print(f"error: cannot read {args.trees}: {error}", file=sys.stderr)
    return 2
  table = sub_question_answers(get_graph(PRESETS[args.dataset].corpus.graph, args.split))
  try:
    rows = count(trees, table)
  except (KeyError, TypeError) as error:
    print(f"error: {args.trees} is not a trees file (a node lacks {error})", file=sys.stderr)
    return 2
  if args.json:
    print(json.dumps(rows, indent=1))
    return 0
  print("| child kind | " + " | ".join(CLASSES) + " | children |")
  print("|---" * (len(CLASSES) + 2) + "|")
  for kind, row in rows.items():
    print(f"| {kind} | " + " | ".join(str(row[c]) for c in CLASSES) + f" | {sum(row.values())} |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
