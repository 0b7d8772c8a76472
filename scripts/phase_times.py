"""Phase times of finished runs, side by side: where a run's wall clock went, from its metrics.jsonl.

    python scripts/phase_times.py /tmp/mj/old /tmp/mj/new      # work directories (or metrics files)

Per run: data, tokenizer and warm-start time (the setup record), and summed over the RL steps: rollout
total and its decode, prefill, interpreter and host parts, decode steps, the policy update (train), the
whole step, and the evaluations; the last column of each row is the ratio of the last run to the first.
"""
from __future__ import annotations

import argparse
import os

from rao_jax.train.metrics_log import read_records

SETUP = ("time/data_s", "time/tokenizer_s", "time/warm_start_s")
PER_STEP = ("rollout/time/total_s", "rollout/time/decode_s", "rollout/time/prefill_s",
            "rollout/time/interpreter_s", "rollout/time/host_s", "rollout/decode_steps", "time/train_s",
            "time/step_s")


def phase_totals(path: str) -> dict[str, float]:
  """Setup times, per-step sums over the train records and the evaluations' total of one run."""
  records = read_records(path if path.endswith(".jsonl") else os.path.join(path, "metrics.jsonl"))
  totals = {name: 0.0 for name in (*SETUP, *PER_STEP, "time/eval_s")}
  for record in records:
    kind = record.get("kind")
    names = SETUP if kind == "setup" else PER_STEP if kind == "train" else ("time/eval_s",) if kind == "eval" else ()
    for name in names:
      totals[name] += float(record.get(name, 0.0))
  totals["train steps"] = float(sum(r.get("kind") == "train" for r in records))
  return totals


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("runs", nargs="+", help="work directories or metrics.jsonl files")
  args = parser.parse_args()
  columns = [phase_totals(run) for run in args.runs]
  print("| phase | " + " | ".join(args.runs) + " | last / first |")
  print("|---|" + "---:|" * (len(args.runs) + 1))
  for name in columns[0]:
    values = [c[name] for c in columns]
    ratio = f"{values[-1] / values[0]:.2f}" if values[0] else "-"
    print(f"| {name} | " + " | ".join(f"{v:,.1f}" for v in values) + f" | {ratio} |")


if __name__ == "__main__":
  main()
