"""The end-of-run report of a RAO run, read from its metrics log: held-out success per tier, before and after.

    tier      warm start (step 0)   after RL (step 40)    change
    easy      25 / 30   83%         29 / 30   97%         +13 pts
    ...

Everything comes from `metrics.jsonl`, so a resumed or completed run prints the same report as the run that
wrote it.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence

from rao_jax.train.metrics_log import read_records

_TIER_ORDER = ("easy", "medium", "hard", "extreme")


def eval_records(workdir: str) -> list[dict]:
  """The run's evaluation records, in step order."""
  records = read_records(os.path.join(workdir, "metrics.jsonl"))
  return sorted((r for r in records if r.get("kind") == "eval"), key=lambda r: r["step"])


def tiers_of(record: dict) -> list[str]:
  """The difficulty tiers an evaluation record covers, easiest first."""
  tiers = [key.split("/", 1)[1] for key in record if key.startswith("tasks/")]
  return sorted(tiers, key=lambda t: (_TIER_ORDER.index(t) if t in _TIER_ORDER else len(_TIER_ORDER), t))


def _logged(record: dict, key: str) -> float | None:
  """A logged number, or None where the record lacks it or logged it as null (a NaN: e.g. an evaluation
  whose judge returned a non-finite success)."""
  value = record.get(key)
  return None if value is None or not math.isfinite(value) else float(value)


def _cell(record: dict, tier: str) -> str:
  solved, tasks, success = (_logged(record, f"{name}/{tier}") for name in ("solved", "tasks", "success"))
  if solved is None or tasks is None or success is None:
    return f"{'n/a':>3} / {'?' if tasks is None else int(tasks):<3} {'n/a':>4}"
  return f"{int(solved):>3} / {int(tasks):<3} {success:>4.0%}"


def _change(first: dict, last: dict, tier: str) -> float | None:
  """The change in points of `tier`'s success between two evaluations (None if either is unknown)."""
  before, after = _logged(first, f"success/{tier}"), _logged(last, f"success/{tier}")
  return None if before is None or after is None else 100 * (after - before)


def _points(change: float | None) -> str:
  return "n/a" if change is None else f"{change:+.0f} pts"


def success_table(first: dict, last: dict) -> str:
  """Greedy held-out success per tier at two evaluations (counts and shares), and the change in points.

  A cell whose success was logged as null (NaN) reads "n/a", and so do its change and the mean change.
  """
  before, after = f"warm start (step {first['step']})", f"after RL (step {last['step']})"
  tiers = tiers_of(last)
  width = max([9, *(len(tier) for tier in tiers)])
  rows = [f"{'tier':<{width}} {before:<22} {after:<22} change"]
  changes = []
  for tier in tiers:
    changes.append(_change(first, last, tier))
    rows.append(f"{tier:<{width}} {_cell(first, tier):<22} {_cell(last, tier):<22} {_points(changes[-1])}")
  mean_change = (None if not changes or any(c is None for c in changes) else sum(changes) / len(changes))
  rows.append(f"{'mean':<{width}} {'':<22} {'':<22} {_points(mean_change)}")
  return "\n".join(rows)


def report(workdir: str, trees_split: str) -> str:
  """The report of the run in `workdir` (or a note that it has no evaluation yet)."""
  evals = [r for r in eval_records(workdir) if any(k.startswith("tasks/") for k in r)]
  if not evals:
    return f"no evaluation in {workdir}/metrics.jsonl yet"
  first, last = evals[0], evals[-1]
  trees = os.path.join(workdir, "trees", f"eval_{trees_split}_step{last['step']:06d}.jsonl")
  # "solved" sums the roots' scores in [0, 1] (a count where scores are 0 or 1); the share is their mean.
  lines = ["Greedy held-out success (solved / tasks, mean score):", success_table(first, last), "",
           f"work directory: {workdir}",
           f"view the final evaluation's trees: python -m rao_jax.viz --trees {trees}"]
  return "\n".join(lines)


def depth_summary(records: Sequence[dict], tier: str = "hard") -> str | None:
  """How deep the solved held-out `tier` trees of the final evaluation are against every solved training
  tree ("held-out hard trees solved at depth up to 8; solved training trees at most depth 5")."""
  evals = [r for r in records if r.get("kind") == "eval" and _logged(r, f"max_depth_solved/{tier}") is not None]
  train = [_logged(r, "rollout/max_depth_solved") for r in records if r.get("kind") == "train"]
  train = [depth for depth in train if depth is not None]
  if not evals or not train:
    return None
  return (f"solved held-out {tier} trees reach depth {int(evals[-1][f'max_depth_solved/{tier}'])} (final "
          f"evaluation); solved training trees reached at most depth {int(max(train))}")
