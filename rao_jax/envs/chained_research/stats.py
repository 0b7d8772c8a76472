"""Statistics of a chained research preset: its graphs, pages and question splits, as JSON.

    python -m rao_jax.envs.chained_research.stats --config tiny
    python -m rao_jax.envs.chained_research.stats --config paper
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import statistics
from typing import Any, Sequence

from rao_jax.envs.chained_research import pages as pages_lib
from rao_jax.envs.chained_research.graph import KINDS, get_graph
from rao_jax.envs.chained_research.questions import (
    DIFFICULTIES, PRESETS, SPLITS, build_splits, split_report, start_descriptions)


def _mean(values: Sequence[float], digits: int = 1) -> float | None:
  return round(statistics.fmean(values), digits) if values else None


def split_stats(preset_name: str, split: str) -> dict[str, Any]:
  """Entities, pages and questions of one split, and what the question filters dropped."""
  preset = PRESETS[preset_name]
  graph = get_graph(preset.corpus.graph, split)
  pages = pages_lib.render_pages(graph, preset.corpus.distractors, preset.corpus.sentences)
  tasks = build_splits(preset_name)[split]
  report = split_report(preset_name, split)
  checked = report.dropped_single_search + sum(report.kept.values())
  return {
      "entities": len(graph.entities),
      "entities_per_kind": {kind: len(graph.of_kind(kind)) for kind in KINDS},
      "entities_with_a_twin": sum(e.twin is not None for e in graph.entities.values()),
      "describable_start_entities": len(start_descriptions(graph)),
      "start_attributes_histogram": dict(sorted(collections.Counter(
          len(combo) for combo in start_descriptions(graph).values()).items())),
      "pages": len(pages),
      "mean_page_chars": _mean([len(p.text) for p in pages]),
      "mean_page_words": _mean([len(p.text.split()) for p in pages]),
      "questions": len(tasks),
      "questions_per_difficulty": {d: sum(t.difficulty == d for t in tasks) for d in DIFFICULTIES},
      "mean_lookups_per_difficulty": {d: _mean([len(t.hops) for t in tasks if t.difficulty == d])
                                      for d in DIFFICULTIES},
      "mean_question_words_per_difficulty": {d: _mean([len(t.question.split()) for t in tasks if t.difficulty == d])
                                             for d in DIFFICULTIES},
      "candidates_sampled": report.candidates,
      "dropped": {"single_search": report.dropped_single_search, "unsolvable": report.dropped_unsolvable,
                  "duplicate": report.dropped_duplicate, "dead_end_walks": report.dead_end_walks},
      # Of the candidates that reached the single-search check, the share it dropped.
      "single_search_drop_rate": round(report.dropped_single_search / checked, 3) if checked else None,
  }


def summary(preset_name: str) -> dict[str, Any]:
  preset = PRESETS[preset_name]
  return {"config": preset_name, "corpus": dataclasses.asdict(preset.corpus),
          "questions": dataclasses.asdict(preset.questions),
          "splits": {split: split_stats(preset_name, split) for split in SPLITS}}


def main(argv: Sequence[str] | None = None) -> None:
  """argparse rather than absl flags: this module is imported by tests (see textcraft_synth/stats.py)."""
  parser = argparse.ArgumentParser(description="Chained research corpus and split statistics (JSON).")
  parser.add_argument("--config", default="tiny", choices=sorted(PRESETS), help="preset")
  args = parser.parse_args(argv)
  print(json.dumps(summary(args.config), indent=2))


if __name__ == "__main__":
  main()
