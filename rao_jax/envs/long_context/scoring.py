"""Scoring of the long-context suite: the Oolong-Real rules, and their extension to sub-goal results.

Root answers (`score_answer`): take the content of the last `\\boxed{...}` of the message (none: 0);
parse gold and prediction alike (`parse_answer`: an int if the text is one, else a list of stripped
items if it has a comma, else the stripped string); then

    int  vs int:    0.75 ** |gold - pred|
    str  vs str:    1 if equal ignoring case, else 0
    list vs list:   |set(gold) ∩ set(pred)| / |set(gold)|   (items compared ignoring case)
    otherwise:      0                                     (a type mismatch)

Delegated sub-goals (`score_value`) return JSON values, not boxed text: a str is parsed as above, an
int, a list of str or a dict {str: int} is taken as is. Lists use the list rule (an empty gold list
scores 1 only against an empty prediction), and a dict scores the share of keys of gold ∪ prediction
whose counts agree (keys compared ignoring case; an absent key counts 0).

A child's success (`sub_goal_success`) is exact: 1 iff `score_value` is 1, else 0. Partial credit
would reward a child that reads nothing: RAO subtracts the *root's* leave-one-out baseline from every
node of a tree (RAO_METHOD.md, section 4), so with roots near 0 a child answering "0" for a count whose
chunk answer is 1 would still get an advantage of about +0.75 and be reinforced. A first tiny run
with partial credit taught every child to answer 0 (docs/results.md, twelfth session).
"""
from __future__ import annotations

import re
from typing import Any

Answer = Any  # int | str | list[str] | dict[str, int]
_BOXED = re.compile(r"\\boxed\{")
_INT = re.compile(r"[+-]?\d+")


def last_boxed(message: str) -> str | None:
  """The content of the last `\\boxed{...}` (braces inside balanced), or None if there is none."""
  starts = [match.end() for match in _BOXED.finditer(message)]
  if not starts:
    return None
  depth, start = 1, starts[-1]
  for index in range(start, len(message)):
    depth += {"{": 1, "}": -1}.get(message[index], 0)
    if depth == 0:
      return message[start:index]
  return None


def parse_answer(text: str) -> int | str | list[str]:
  """An int if `text` is one, else a list of stripped items if it has a comma, else the stripped text."""
  text = text.strip()
  if _INT.fullmatch(text) and len(text) <= 30:
    return int(text)
  if "," in text:
    return [item.strip() for item in text.split(",") if item.strip()]
  return text


def format_answer(answer: Answer) -> str:
  """The text a correct root writes inside `\\boxed{}` for `answer` (a list as "a, b")."""
  if isinstance(answer, list):
    return ", ".join(answer)
  return str(answer)


def _fold(items: list) -> set[str]:
  return {str(item).strip().lower() for item in items}


def _score_parsed(gold: Answer, pred: Answer) -> float:
  if type(gold) is int and type(pred) is int:
    return 0.75 ** min(abs(gold - pred), 10_000)
  if type(gold) is str and type(pred) is str:
    return float(gold.lower() == pred.strip().lower())
  if type(gold) is list and type(pred) is list:
    gold_set = _fold(gold)
    if not gold_set:
      return float(not pred)
    return len(gold_set & _fold(pred)) / len(gold_set)
  if type(gold) is dict and type(pred) is dict:
    if not all(type(v) is int for v in pred.values()):
      return 0.0
    gold_counts = {str(k).lower(): v for k, v in gold.items()}
    pred_counts = {str(k).lower(): v for k, v in pred.items()}
    keys = set(gold_counts) | set(pred_counts)
    if not keys:
      return 1.0
    return sum(gold_counts.get(k, 0) == pred_counts.get(k, 0) for k in keys) / len(keys)
  return 0.0


def score_answer(gold_text: str, message: Any) -> float:
  """A root's score: its finish `message` against the gold answer text (module docstring)."""
  if not isinstance(message, str):
    return 0.0
  boxed = last_boxed(message)
  if boxed is None:
    return 0.0
  return _score_parsed(parse_answer(gold_text), parse_answer(boxed))


def score_value(gold: Answer, value: Any) -> float:
  """A child's score: the JSON value it finished with against its sub-goal's gold (module docstring)."""
  if isinstance(value, str):
    boxed = last_boxed(value)
    value = parse_answer(boxed if boxed is not None else value)
    if type(gold) is list and type(value) is str:
      value = [value]  # a one-item list written as text has no comma
  if type(value) is bool:
    return 0.0
  return _score_parsed(gold, value)


def sub_goal_success(gold: Answer, value: Any) -> float:
  """A child's success: 1.0 iff its finish `value` is exactly its sub-goal's `gold` (module docstring)."""
  return float(score_value(gold, value) == 1.0)
