"""`Trees`: the rollout engine's output, one row per node of every execution tree.

Node arrays are flat and aligned (index i = node i), ready for segment operations on device:
`parent[i]` is the index of node i's parent (−1 for roots), `tree[i]` the tree it belongs to and
`group[i]` the root task it samples (the G trees of one task share a group). Each node's token
sequence (prompt, its turns, observations) is stored ragged: node i owns
`tokens[token_offsets[i]:token_offsets[i + 1]]`, with `loss_mask` true exactly at model-generated
tokens and `sampler_log_probs` the sampler's log π_old there (0 elsewhere).
"""
from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np


class EndReason(enum.IntEnum):
  """How a node ended."""

  FINISHED = 0          # called finish(...)
  STEP_LIMIT = 1        # used all its cells without finishing
  CONTEXT_OVERFLOW = 2  # prompt + next completion would not fit the context window
  CRASHED = 3           # its interpreter process died, hung or broke the protocol
  TIMEOUT = 4           # the tree's wall-clock limit passed
  TREE_BUDGET = 5       # the tree's shared step budget ran out


@dataclasses.dataclass(frozen=True)
class Trees:
  """All nodes of a batch of execution trees (N nodes, L tokens in all)."""

  tree: np.ndarray               # [N] int32 tree index
  group: np.ndarray              # [N] int32 root-task index (G trees per group)
  parent: np.ndarray             # [N] int32 parent node index, -1 for roots
  depth: np.ndarray              # [N] int32, 0 for roots
  success: np.ndarray            # [N] float32 own success s in [0, 1]
  num_children: np.ndarray       # [N] int32 direct children launched
  launch_cell: np.ndarray        # [N] int32 the parent's cell that launched this node (-1 for roots)
  end_reason: np.ndarray         # [N] int32 EndReason
  steps: np.ndarray              # [N] int32 cells run (turns taken)
  tokens_generated: np.ndarray   # [N] int32 model tokens
  first_round: np.ndarray        # [N] int32 first decode round in which the node generated
  last_round: np.ndarray         # [N] int32 last decode round in which the node generated
  first_step: np.ndarray         # [N] int64 global decode step of the node's first token
  last_step: np.ndarray          # [N] int64 global decode step of the node's last token
  token_offsets: np.ndarray      # [N + 1] int64
  tokens: np.ndarray             # [L] int32
  loss_mask: np.ndarray          # [L] bool
  sampler_log_probs: np.ndarray  # [L] float32
  records: tuple[dict[str, Any], ...] = ()   # per node: goal, turns, result, timing (JSON-like)

  @property
  def num_nodes(self) -> int:
    return int(self.tree.shape[0])

  @property
  def num_trees(self) -> int:
    return int(self.tree.max()) + 1 if self.num_nodes else 0

  def node_sequence(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tokens, loss mask and sampler log-probs of node i."""
    start, end = self.token_offsets[i], self.token_offsets[i + 1]
    return self.tokens[start:end], self.loss_mask[start:end], self.sampler_log_probs[start:end]

  def roots(self) -> np.ndarray:
    return np.flatnonzero(self.parent < 0)

  @classmethod
  def concatenate(cls, parts: Sequence["Trees"]) -> "Trees":
    """One record of `parts` in order (e.g. the host shards of a rollout, each holding whole trees).

    Node rows are renumbered: part k's rows follow those of parts 0..k-1, so its parent indices and
    its records' child rows shift by the nodes before it; tree and group ids are kept as they are.
    """
    if len(parts) == 1:
      return parts[0]
    shifts = np.cumsum([0] + [p.num_nodes for p in parts])[:-1]
    token_shifts = np.cumsum([0] + [len(p.tokens) for p in parts])[:-1]

    def joined(name: str) -> np.ndarray:
      return np.concatenate([getattr(p, name) for p in parts])

    parent = np.concatenate([np.where(p.parent >= 0, p.parent + shift, -1).astype(np.int32)
                             for p, shift in zip(parts, shifts)])
    offsets = np.concatenate([[0]] + [p.token_offsets[1:] + shift
                                      for p, shift in zip(parts, token_shifts)]).astype(np.int64)
    records = tuple({**record, "children": [c + int(shift) for c in record["children"]]}
                    if "children" in record else record
                    for p, shift in zip(parts, shifts) for record in p.records)
    plain = {f.name: joined(f.name) for f in dataclasses.fields(cls)
             if f.name not in ("parent", "token_offsets", "records")}
    return cls(**plain, parent=parent, token_offsets=offsets, records=records)

  def to_jsonl(self, path: str, group_tags: Sequence[dict[str, Any]] | None = None) -> None:
    """Writes one JSON object per tree: its nodes (records plus their scalar fields), nested by id.

    `group_tags[g]` (JSON-like, e.g. {"difficulty": "hard"}) is copied into every tree of group g. A
    non-finite float (a judge's NaN success, say) is written as null, which JSON has, not as `NaN`, which
    strict readers (the viewer's `JSON.parse`) reject; `read_jsonl` turns a null success back into NaN.
    """
    with open(path, "w", encoding="utf-8") as f:
      for line in self.tree_dicts(group_tags):
        f.write(json.dumps(_finite_or_null(line), ensure_ascii=False, allow_nan=False) + "\n")

  def tree_dicts(self, group_tags: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    trees: dict[int, dict[str, Any]] = {}
    for i in range(self.num_nodes):
      t = int(self.tree[i])
      if t not in trees:
        tags = group_tags[int(self.group[i])] if group_tags is not None else {}
        trees[t] = {"tree": t, "group": int(self.group[i]), **tags, "nodes": []}
      tree = trees[t]
      node = {
          "id": i, "parent": int(self.parent[i]), "depth": int(self.depth[i]),
          "success": float(self.success[i]), "num_children": int(self.num_children[i]),
          "launch_cell": int(self.launch_cell[i]), "end_reason": EndReason(int(self.end_reason[i])).name,
          "steps": int(self.steps[i]), "tokens_generated": int(self.tokens_generated[i]),
          "first_round": int(self.first_round[i]), "last_round": int(self.last_round[i]),
          "first_step": int(self.first_step[i]), "last_step": int(self.last_step[i]),
      }
      if self.records:
        node.update(self.records[i])
      tree["nodes"].append(node)
    return [trees[t] for t in sorted(trees)]


def _finite_or_null(value: Any) -> Any:
  """`value` (JSON-like) with every non-finite float, at any depth, replaced by None (JSON null)."""
  if isinstance(value, float):
    return value if math.isfinite(value) else None
  if isinstance(value, dict):
    return {k: _finite_or_null(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_finite_or_null(v) for v in value]
  return value


def read_jsonl(path: str) -> list[dict[str, Any]]:
  """The trees of a `Trees.to_jsonl` file, one dict per tree, each node's null success back as NaN."""
  trees = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      if line.strip():
        tree = json.loads(line)
        for node in tree["nodes"]:
          if "success" in node and node["success"] is None:
            node["success"] = float("nan")
        trees.append(tree)
  return trees


def concatenate_sequences(sequences: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Ragged (tokens, mask, log-probs) per node -> offsets [N+1], tokens, mask, log-probs."""
  lengths = np.array([len(s[0]) for s in sequences], np.int64)
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  if not sequences:
    return offsets, np.zeros(0, np.int32), np.zeros(0, bool), np.zeros(0, np.float32)
  return (offsets,
          np.concatenate([s[0] for s in sequences]).astype(np.int32),
          np.concatenate([s[1] for s in sequences]).astype(bool),
          np.concatenate([s[2] for s in sequences]).astype(np.float32))
