"""Tokens per expert transcript of TextCraft-Synth, flat vs recursive, per difficulty.

  python scripts/transcript_lengths.py --world paper --per_difficulty 12 --vocab_size 4096

Solves a sample of val tasks per difficulty with the flat and the recursive expert solver, trains a
SentencePiece tokenizer on the transcripts (`rao_jax.tokenizer.train_sentencepiece`), and counts
each node's context exactly as the toy chat layout builds it: system prompt + first user turn
(`rao_jax.agent.prompts`), then every assistant turn and observation. Prints one table per solver
setting and, per context window, the share of tasks whose every node fits: this tells which windows
make a tier impossible for a single agent and possible for a recursive one.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import statistics
import sys
import tempfile

from rao_jax import tokenizer as tokenizer_lib
from rao_jax.agent import chat, prompts
from rao_jax.envs.base import PromptParts
from rao_jax.envs.textcraft_synth import env as env_lib
from rao_jax.envs.textcraft_synth import solvers
from rao_jax.envs.textcraft_synth import tasks as tasks_lib
from rao_jax.envs.textcraft_synth.world import get_world

WINDOWS = (2048, 4096, 8192, 16384, 40960)


@dataclasses.dataclass(frozen=True)
class TreeLengths:
  """Token and cell counts of one solved task."""

  root_tokens: int
  max_node_tokens: int
  total_tokens: int
  nodes: int
  depth: int
  max_cells: int


def node_texts(node: solvers.Transcript, step_budget: int) -> tuple[str, str, list[tuple[str, str | None]]]:
  """(system, first user turn, [(assistant turn, observation or None)]) of one node."""
  parts = PromptParts(**node.prompt)
  system = prompts.system_prompt(parts, delegation=node.delegation)
  user = prompts.first_user_turn(parts, step_budget=step_budget)
  turns = [(turn.assistant_text(), None if turn.output is None else node.observation_text(i))
           for i, turn in enumerate(node.turns, 1)]
  return system, user, turns


def count_node_tokens(layout: chat.ChatLayout, node: solvers.Transcript, step_budget: int) -> int:
  system, user, turns = node_texts(node, step_budget)
  conversation = layout.start(system, user)
  for completion, observation in turns:
    ids = layout.tokenizer.encode(completion + layout.turn_close)
    layout.add_turn(conversation, ids, None, observation)
  return len(conversation)


def tree_lengths(layout: chat.ChatLayout, root: solvers.Transcript, step_budget: int) -> TreeLengths:
  tokens = [count_node_tokens(layout, node, step_budget) for node in root.nodes()]
  return TreeLengths(root_tokens=tokens[0], max_node_tokens=max(tokens), total_tokens=sum(tokens),
                     nodes=len(tokens), depth=max(node.depth for node in root.nodes()),
                     max_cells=max(len(node.turns) for node in root.nodes()))


def _mean_max(values: list[int]) -> str:
  return f"{statistics.mean(values):,.0f} / {max(values):,}"


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--world", default="paper", help="world preset")
  parser.add_argument("--split", default="val", choices=tasks_lib.SPLITS)
  parser.add_argument("--per_difficulty", type=int, default=12, help="tasks per difficulty")
  parser.add_argument("--vocab_size", type=int, default=4096)
  parser.add_argument("--step_budget", type=int, default=25, help="cells per node in the prompt")
  parser.add_argument("--max_own_crafts", type=int, nargs="+", default=[8, 16],
                      help="recursive solver settings to compare")
  parser.add_argument("--crafts_per_cell", type=int, default=1)
  args = parser.parse_args(argv)

  world = get_world(args.world)
  all_tasks = tasks_lib.build_splits(world)[args.split]
  by_difficulty = collections.defaultdict(list)
  for task in all_tasks:
    if len(by_difficulty[task.difficulty]) < args.per_difficulty:
      by_difficulty[task.difficulty].append(task)

  settings = {"flat": solvers.SolverConfig(crafts_per_cell=args.crafts_per_cell)}
  for budget in args.max_own_crafts:
    settings[f"recursive (max_own_crafts={budget})"] = solvers.SolverConfig(
        delegate=True, max_own_crafts=budget, crafts_per_cell=args.crafts_per_cell)
  transcripts = {name: {d: [] for d in tasks_lib.DIFFICULTIES} for name in settings}
  for name, config in settings.items():
    for difficulty in tasks_lib.DIFFICULTIES:
      for task in by_difficulty[difficulty]:
        root = env_lib.make_root_environment({"world": args.world}, task.to_dict())
        transcripts[name][difficulty].append(solvers.solve(root, config))

  corpus = []
  for per_difficulty in transcripts.values():
    for roots in per_difficulty.values():
      for root in roots[:3]:  # A few trees per cell of the table are plenty of text.
        for node in list(root.nodes())[:50]:
          system, user, turns = node_texts(node, args.step_budget)
          corpus += [system, user] + [text for turn in turns for text in turn if text]
  with tempfile.TemporaryDirectory() as directory:
    tokenizer = tokenizer_lib.train_sentencepiece(
        corpus, model_prefix=f"{directory}/tokenizer", vocab_size=args.vocab_size)
    layout = chat.ToyChatLayout(tokenizer)
    print(f"world={args.world} split={args.split} tasks/difficulty={args.per_difficulty} "
          f"vocab={tokenizer.vocab_size} step_budget={args.step_budget} "
          f"crafts_per_cell={args.crafts_per_cell}\n")
    lengths = {name: {d: [tree_lengths(layout, root, args.step_budget) for root in roots]
                      for d, roots in per_difficulty.items()}
               for name, per_difficulty in transcripts.items()}

  for name, per_difficulty in lengths.items():
    print(f"## {name}  (mean / max over tasks)")
    print("| difficulty | root tokens | max node tokens | total tokens | nodes | depth | max cells/node |")
    print("|---|---|---|---|---|---|---|")
    for difficulty, values in per_difficulty.items():
      if values:
        print(f"| {difficulty} | {_mean_max([v.root_tokens for v in values])} "
              f"| {_mean_max([v.max_node_tokens for v in values])} "
              f"| {_mean_max([v.total_tokens for v in values])} | {_mean_max([v.nodes for v in values])} "
              f"| {max(v.depth for v in values)} | {_mean_max([v.max_cells for v in values])} |")
    print()

  for with_steps in (False, True):
    what = "the window and the step budget" if with_steps else "the window (tokens only)"
    print(f"## Share of tasks whose every node fits {what}")
    header = " | ".join(f"{w // 1024}K" for w in WINDOWS)
    print(f"| solver | difficulty | {header} |")
    print("|---|---|" + "---|" * len(WINDOWS))
    for name, per_difficulty in lengths.items():
      for difficulty, values in per_difficulty.items():
        if values:
          shares = [sum(v.max_node_tokens <= w and (v.max_cells <= args.step_budget or not with_steps)
                        for v in values) / len(values) for w in WINDOWS]
          print(f"| {name} | {difficulty} | " + " | ".join(f"{s:.0%}" for s in shares) + " |")
    print()
  return 0


if __name__ == "__main__":
  sys.exit(main())
