"""Does a policy read its context? Teacher-forced next-token accuracy on expert transcripts, by token kind.

On a held-out task an item name cannot be guessed: the policy has to copy it from the goal or from a
recipe it looked up. A policy that learned the protocol but not to copy scores high on every other token
and near zero on item names, and then solves only tasks it memorised (docs/results.md). The probe runs
the policy over expert transcripts (teacher forcing: each prediction sees the expert's tokens before it)
and counts argmax hits on the policy's tokens of three kinds:

  goal_item:   the first item name the policy writes, which is the goal's item, copied from the prompt
               into its first lookup (`get_info(['m1_i2'])`);
  later_items: every later item name (ingredients copied from recipes, delegated goals, crafts);
  other:       all other policy tokens (protocol, code, thoughts, counts).
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rao_jax import tokenizer as tokenizer_lib
from rao_jax.agent.chat import Conversation

TOKEN_KINDS = ("goal_item", "later_items", "other")
_LENGTH_BUCKET = 128


@dataclasses.dataclass(frozen=True)
class ProbeResult:
  """Hits and counts per token kind (`TOKEN_KINDS`)."""

  correct: dict[str, int]
  total: dict[str, int]

  def accuracy(self, kind: str) -> float:
    """Argmax accuracy on tokens of `kind` (0 when there are none)."""
    return self.correct[kind] / max(self.total[kind], 1)


def token_kinds(tokens: Sequence[int], loss_mask: np.ndarray, tokenizer: tokenizer_lib.Tokenizer,
                item_pattern: re.Pattern) -> dict[str, np.ndarray]:
  """[len(tokens)] bool masks of the policy tokens of each kind (see the module doc).

  The goal item is the first run of consecutive policy tokens inside item names (one token with whole-
  word item pieces, several with character-level ones). The masks are disjoint and cover `loss_mask`.
  """
  loss_mask = np.asarray(loss_mask, bool)
  in_item = tokenizer_lib.matched_token_mask(tokenizer, tokens, item_pattern) & loss_mask
  goal = np.zeros_like(in_item)
  item_positions = np.flatnonzero(in_item)
  if item_positions.size:
    start = end = item_positions[0]
    while end + 1 < len(in_item) and in_item[end + 1]:
      end += 1
    goal[start:end + 1] = True
  return {"goal_item": goal, "later_items": in_item & ~goal, "other": loss_mask & ~in_item}


@nnx.jit
def _row_logits(model: nnx.Module, tokens: jax.Array) -> jax.Array:
  """[1, T] int32 -> [1, T, V] float32 logits at positions 0..T−1 (compiled once per model graph and T)."""
  return model(tokens, jnp.arange(tokens.shape[1])[None])[0]


def teacher_forced_accuracy(model: nnx.Module, conversations: Sequence[Conversation],
                            tokenizer: tokenizer_lib.Tokenizer, item_pattern: re.Pattern) -> ProbeResult:
  """Argmax next-token accuracy of `model` on the policy tokens of `conversations`, per token kind.

  Each conversation runs alone (one row, positions 0..T−1, zero-padded at the end to a multiple of
  `_LENGTH_BUCKET` so few lengths compile; causal attention keeps the padding out of every prediction).
  The prediction at t − 1 scores token t.
  """
  correct = dict.fromkeys(TOKEN_KINDS, 0)
  total = dict.fromkeys(TOKEN_KINDS, 0)
  for conversation in conversations:
    ids = np.asarray(conversation.token_ids())
    padded = np.zeros(-(-len(ids) // _LENGTH_BUCKET) * _LENGTH_BUCKET, np.int32)
    padded[:len(ids)] = ids
    logits = _row_logits(model, jnp.asarray(padded)[None])  # [1, T', V]
    predicted = np.asarray(jax.device_get(jnp.argmax(logits[0, :len(ids) - 1], axis=-1)))  # ids[1:]
    hit = np.concatenate([[False], predicted == ids[1:]])  # [T]: token t predicted at t − 1
    for kind, where in token_kinds(ids, conversation.loss_mask(), tokenizer, item_pattern).items():
      where[0] = False  # the first token has no prediction (a fresh mask: safe to write)
      correct[kind] += int(hit[where].sum())
      total[kind] += int(where.sum())
  return ProbeResult(correct=correct, total=total)
