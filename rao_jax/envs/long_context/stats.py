"""Statistics of a long-context setting: transcript sizes per bucket, question families, answers, as JSON.

    python -m rao_jax.envs.long_context.stats --config tiny
    python -m rao_jax.envs.long_context.stats --config tiny --tokenizer workdir/long_context_tiny/tokenizer

With `--tokenizer` (a SentencePiece .model file, or a directory holding one at any depth, such as a run's
tokenizer directory) sizes are also given in tokens, and as multiples of `--window`.
"""
from __future__ import annotations

import argparse
import collections
import json
import pathlib
import statistics
from typing import Any, Callable

from rao_jax.envs.long_context import dataset
from rao_jax.envs.long_context.sessions import Roll, SpellCast, cached_campaign
from rao_jax.envs.long_context.tasks import DIFFICULTIES, SPLITS, build_split


def _summary(values: list[float]) -> dict[str, float]:
  return {"min": min(values), "mean": round(statistics.fmean(values), 1), "max": max(values)}


def split_stats(config_name: str, split: str, count_tokens: Callable[[str], int] | None = None,
                window: int = 0) -> dict[str, Any]:
  """Sizes, event counts and question families of one split, per bucket."""
  config = dataset.builder_config(config_name)
  tasks = build_split(config.session, config.tasks, split)
  stats: dict[str, Any] = {}
  for difficulty in DIFFICULTIES:
    chosen = [t for t in tasks if t.difficulty == difficulty]
    campaigns = [cached_campaign(config.session, t.seed, t.num_episodes) for t in chosen]
    events = [c.events() for c in campaigns]
    entry = {
        "tasks": len(chosen),
        "chars": _summary([len(c.text) for c in campaigns]),
        "lines": _summary([len(c.lines) for c in campaigns]),
        "rolls": _summary([sum(isinstance(e, Roll) for e in es) for es in events]),
        "spell_casts": _summary([sum(isinstance(e, SpellCast) for e in es) for es in events]),
        "families": dict(sorted(collections.Counter(t.question.family for t in chosen).items())),
        "answer_kinds": dict(collections.Counter(
            "int" if t.answer.lstrip("-").isdigit() else "list" if "," in t.answer else "str" for t in chosen)),
    }
    if count_tokens is not None:
      tokens = [count_tokens(c.text) for c in campaigns]
      entry["tokens"] = _summary(tokens)
      if window:
        entry["min_tokens_per_episode_over_window"] = round(
            min(n / t.num_episodes for n, t in zip(tokens, chosen)) / window, 2)
    stats[difficulty] = entry
  return stats


def _token_counter(path: str) -> Callable[[str], int]:
  import sentencepiece  # only with --tokenizer
  found = pathlib.Path(path)
  if found.is_dir():
    models = sorted(found.rglob("*.model"))
    if not models:
      raise FileNotFoundError(f"no SentencePiece .model file under {path}")
    found = models[0]
  processor = sentencepiece.SentencePieceProcessor(model_file=str(found))
  return lambda text: len(processor.encode(text))


def main(argv: list[str] | None = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default="tiny", choices=[c.name for c in dataset.BUILDER_CONFIGS])
  parser.add_argument("--split", default="", choices=("", *SPLITS), help="one split (default: both)")
  parser.add_argument("--tokenizer", default="", help="a SentencePiece model (or a directory holding one)")
  parser.add_argument("--window", type=int, default=416, help="context window for the size ratio")
  args = parser.parse_args(argv)
  counter = _token_counter(args.tokenizer) if args.tokenizer else None
  splits = (args.split,) if args.split else SPLITS
  result = {"config": args.config,
            "session": dataset.builder_config(args.config).session.__dict__,
            **{split: split_stats(args.config, split, counter, args.window) for split in splits}}
  print(json.dumps(result, indent=1))
  return result


if __name__ == "__main__":
  main()
