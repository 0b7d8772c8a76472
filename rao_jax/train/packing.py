"""Packing ragged node sequences into fixed [rows, T] training arrays (host side, numpy).

Every node of every tree is one training sequence: its prompt, its turns and its observations, with a loss
mask on the tokens the policy generated (RAO method spec, section 5). Sequences are packed several to a
row so little compute is spent on padding; attention never crosses sequences because each one gets its
own segment id and positions that restart at 0:

    tokens       a b c d e | f g h | 0 0        (one row holding two sequences and two padding slots)
    segment_ids  1 1 1 1 1   2 2 2   0 0
    positions    0 1 2 3 4   0 1 2   0 0
    node_index   7 7 7 7 7   3 3 3  -1 -1

Targets are next-token and aligned with the token they score: the loss at position t is about token t,
whose log-probability the trainer reads from the logits at t − 1 of the same segment. The first token of
a segment has no target, so `loss_mask` is always False there (it is a prompt token anyway).

`node_index` names the source sequence of every token (for trees, the node id), so that per-node
quantities such as RL advantages are gathered per token on device, inside the train step, from a
per-node array, and never written into the batch on the host.

Sequences longer than T are cut to their first T tokens (`overflow="truncate"`, counted in the returned
`PackingStats`; causal attention makes the kept prefix exact) or rejected (`overflow="error"`). The row
count is either fixed by the caller (`pack_sequences`; a batch that needs more rows raises) or the
fewest whole blocks of rows that first-fit decreasing needs (`pack_blocks`), so the jitted train step
compiles once per block count.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator, Sequence

import jax
import numpy as np
from flax import struct

from rao_jax.agent.chat import Conversation
from rao_jax.rollout.trees import Trees

# One node's (tokens [L] int32, loss_mask [L] bool, sampler log-probs [L] float32), as `Trees.node_sequence`.
NodeSequence = tuple[np.ndarray, np.ndarray, np.ndarray]

_OVERFLOW_MODES = ("truncate", "error")


@struct.dataclass
class PackedBatch:
  """Packed training rows; every field is [..., R, T] (a leading micro-batch axis after `micro_batches`)."""

  tokens: np.ndarray | jax.Array         # [..., R, T] int32, 0 at padding
  positions: np.ndarray | jax.Array      # [..., R, T] int32, restarting at 0 in each segment
  segment_ids: np.ndarray | jax.Array    # [..., R, T] int32, 1.. per sequence in a row, 0 = padding
  loss_mask: np.ndarray | jax.Array      # [..., R, T] bool, a policy token with a target in its segment
  old_log_probs: np.ndarray | jax.Array  # [..., R, T] float32 sampler log π_old (NaN if unknown, 0 off-mask)
  node_index: np.ndarray | jax.Array     # [..., R, T] int32 index of the source sequence, -1 at padding

  @property
  def num_rows(self) -> int:
    return int(self.tokens.shape[-2])

  @property
  def row_length(self) -> int:
    return int(self.tokens.shape[-1])

  def micro_batches(self, num: int) -> PackedBatch:
    """[R, T] -> [num, R / num, T]: consecutive row blocks, one per gradient-accumulation step."""
    if num <= 0 or self.num_rows % num:
      raise ValueError(f"{self.num_rows} rows cannot be split into {num} micro-batches")
    return jax.tree.map(lambda x: x.reshape(num, self.num_rows // num, *x.shape[-1:]), self)


@dataclasses.dataclass(frozen=True)
class PackingStats:
  """How well a batch was packed."""

  num_sequences: int
  rows_used: int
  real_tokens: int         # tokens of the sequences that were placed
  capacity: int            # rows × T
  truncated_sequences: int
  truncated_tokens: int    # tokens cut from over-long sequences

  @property
  def fill(self) -> float:
    """Fraction of the batch's token slots holding real tokens."""
    return self.real_tokens / self.capacity if self.capacity else 0.0


def trees_sequences(trees: Trees, keep: np.ndarray | None = None) -> list[NodeSequence]:
  """One sequence per node of `trees`, in node order (so node_index = node id).

  keep: optional [N] bool; a node with keep[i] False gets an all-false loss mask, so the packers leave it
  out (it would carry no loss).
  """
  sequences = [trees.node_sequence(i) for i in range(trees.num_nodes)]
  if keep is None:
    return sequences
  return [(tokens, mask & bool(keep[i]), log_probs) for i, (tokens, mask, log_probs) in enumerate(sequences)]


def conversation_sequence(conversation: Conversation) -> NodeSequence:
  return conversation.token_ids(), conversation.loss_mask(), conversation.sampler_logprobs()


def first_fit_decreasing(lengths: np.ndarray, num_rows: int, row_length: int) -> np.ndarray:
  """Row of each item under first-fit decreasing bin packing (-1 for items that fit in no row).

  lengths: [N] int, each at most row_length. Items go in order of decreasing length (ties by index) into
  the first row with room; ≤ 11/9 of the optimal row count plus one. Rows are opened in order, so the
  placement does not depend on `num_rows` as long as every item fits.
  """
  lengths = np.asarray(lengths, np.int64)
  if lengths.size and lengths.max() > row_length:
    raise ValueError(f"an item of length {int(lengths.max())} is longer than a row ({row_length})")
  rows = np.full(lengths.shape, -1, np.int64)
  free = np.full(num_rows, row_length, np.int64)
  opened = 0  # rows 0 .. opened - 1 hold something; the rest are empty
  for i in np.argsort(-lengths, kind="stable"):
    candidates = np.flatnonzero(free[:opened] >= lengths[i])
    row = candidates[0] if candidates.size else opened if opened < num_rows else -1
    if row >= 0:
      rows[i] = row
      free[row] -= lengths[i]
      opened = max(opened, row + 1)
  return rows


def _clip_lengths(sequences: Sequence[NodeSequence], row_length: int, overflow: str
                  ) -> tuple[np.ndarray, int, int]:
  if overflow not in _OVERFLOW_MODES:
    raise ValueError(f"overflow={overflow!r} is not one of {_OVERFLOW_MODES}")
  for i, (tokens, mask, log_probs) in enumerate(sequences):
    if not len(tokens) == len(mask) == len(log_probs):
      raise ValueError(f"sequence {i} has {len(tokens)} tokens, {len(mask)} mask and {len(log_probs)} "
                       "log-prob entries")
  lengths = np.asarray([len(s[0]) for s in sequences], np.int64)
  too_long = lengths > row_length
  if too_long.any() and overflow == "error":
    raise ValueError(f"{int(too_long.sum())} sequences are longer than the row length {row_length} "
                     f"(longest {int(lengths.max())}); raise the row length or pack with overflow='truncate'")
  truncated_tokens = int(np.sum(lengths[too_long] - row_length))
  if too_long.any():
    logging.warning("packing: truncated %d sequences longer than %d tokens (%d tokens dropped)",
                    int(too_long.sum()), row_length, truncated_tokens)
  return np.minimum(lengths, row_length), int(too_long.sum()), truncated_tokens


def _materialise(sequences: Sequence[NodeSequence], indices: Sequence[int], rows: np.ndarray,
                 lengths: np.ndarray, num_rows: int, row_length: int) -> PackedBatch:
  """Writes sequence `indices[k]` into row `rows[k]` after the row's earlier sequences."""
  shape = (num_rows, row_length)
  tokens = np.zeros(shape, np.int32)
  positions = np.zeros(shape, np.int32)
  segment_ids = np.zeros(shape, np.int32)
  loss_mask = np.zeros(shape, bool)
  old_log_probs = np.zeros(shape, np.float32)
  node_index = np.full(shape, -1, np.int32)
  used = np.zeros(num_rows, np.int64)
  segments = np.zeros(num_rows, np.int32)
  for index, row, length in zip(indices, rows, lengths):
    seq_tokens, seq_mask, seq_log_probs = sequences[index]
    start, end = used[row], used[row] + length
    segments[row] += 1
    tokens[row, start:end] = seq_tokens[:length]
    positions[row, start:end] = np.arange(length)
    segment_ids[row, start:end] = segments[row]
    loss_mask[row, start + 1:end] = np.asarray(seq_mask[1:length], bool)  # no target for token 0
    old_log_probs[row, start:end] = seq_log_probs[:length]
    node_index[row, start:end] = index
    used[row] = end
  old_log_probs = np.where(loss_mask, old_log_probs, 0.0).astype(np.float32)
  return PackedBatch(tokens=tokens, positions=positions, segment_ids=segment_ids, loss_mask=loss_mask,
                     old_log_probs=old_log_probs, node_index=node_index)


def _trainable(sequences: Sequence[NodeSequence], row_length: int, overflow: str
               ) -> tuple[np.ndarray, np.ndarray, int, int]:
  """(clipped lengths [N], indices of the sequences with a policy token that has a target within the
  row, truncated sequences, truncated tokens)."""
  lengths, truncated, truncated_tokens = _clip_lengths(sequences, row_length, overflow)
  trainable = np.asarray([bool(np.any(s[1][1:n])) for s, n in zip(sequences, lengths)], bool)
  return lengths, np.flatnonzero(trainable), truncated, truncated_tokens


def _packed(sequences: Sequence[NodeSequence], present: np.ndarray, rows: np.ndarray, lengths: np.ndarray,
            num_rows: int, row_length: int, truncated: int, truncated_tokens: int
            ) -> tuple[PackedBatch, PackingStats]:
  batch = _materialise(sequences, present, rows, lengths[present], num_rows, row_length)
  stats = PackingStats(num_sequences=len(present), rows_used=int(rows.max()) + 1 if rows.size else 0,
                       real_tokens=int(lengths[present].sum()), capacity=num_rows * row_length,
                       truncated_sequences=truncated, truncated_tokens=truncated_tokens)
  return batch, stats


def _check_sizes(rows_name: str, rows: int, row_length: int) -> None:
  if rows <= 0 or row_length <= 1:
    raise ValueError(f"need {rows_name} >= 1 and row_length >= 2, got {rows}, {row_length}")


def pack_sequences(sequences: Sequence[NodeSequence], num_rows: int, row_length: int, *,
                   overflow: str = "truncate") -> tuple[PackedBatch, PackingStats]:
  """All `sequences` in one [num_rows, row_length] batch by first-fit decreasing.

  node_index of sequence i is i. Sequences without a trainable token (e.g. a node that hit the context
  window before its first turn) carry no gradient and are left out. Raises ValueError if the rest need
  more rows.
  """
  _check_sizes("num_rows", num_rows, row_length)
  lengths, present, truncated, truncated_tokens = _trainable(sequences, row_length, overflow)
  rows = first_fit_decreasing(lengths[present], num_rows, row_length)
  if (rows < 0).any():
    needed = int(first_fit_decreasing(lengths[present], len(present), row_length).max()) + 1
    raise ValueError(f"{len(present)} sequences ({int(lengths[present].sum())} tokens) need {needed} rows of "
                     f"{row_length} tokens, the batch has {num_rows}")
  return _packed(sequences, present, rows, lengths, num_rows, row_length, truncated, truncated_tokens)


def pack_blocks(sequences: Sequence[NodeSequence], block_rows: int, row_length: int, *,
                overflow: str = "truncate") -> tuple[PackedBatch, PackingStats]:
  """All `sequences` in as few blocks of `block_rows` rows as first-fit decreasing needs (at least one).

  One first-fit-decreasing pass places the trainable sequences (as in `pack_sequences`, node_index of
  sequence i is i); the batch has R = block_rows · max(1, ⌈rows used / block_rows⌉) rows, so
  `batch.micro_batches(R // block_rows)` gives micro-batches of `block_rows` rows. A batch without a
  trainable sequence is one block of padding.
  """
  _check_sizes("block_rows", block_rows, row_length)
  lengths, present, truncated, truncated_tokens = _trainable(sequences, row_length, overflow)
  rows = first_fit_decreasing(lengths[present], len(present), row_length)  # every item fits
  rows_used = int(rows.max()) + 1 if rows.size else 0
  num_rows = block_rows * max(1, -(-rows_used // block_rows))
  return _packed(sequences, present, rows, lengths, num_rows, row_length, truncated, truncated_tokens)


def pack_stream(sequences: Iterable[NodeSequence], num_rows: int, row_length: int, *,
                overflow: str = "truncate") -> Iterator[tuple[PackedBatch, PackingStats]]:
  """Consecutive batches of `sequences` in their given order, each as full as first-fit makes it.

  A sequence goes into the first row of the current batch with room for it; when none has, the batch is
  emitted and a new one started. node_index is the sequence's position in the stream; sequences without
  a trainable token are left out, as in `pack_sequences`.
  """
  _check_sizes("num_rows", num_rows, row_length)
  pending: list[NodeSequence] = []
  stream_indices: list[int] = []
  placed_rows: list[int] = []
  free = np.full(num_rows, row_length, np.int64)

  def emit():
    lengths, truncated, truncated_tokens = _clip_lengths(pending, row_length, overflow)
    batch = _materialise(pending, range(len(pending)), np.asarray(placed_rows), lengths, num_rows, row_length)
    stream_index = np.asarray(stream_indices, np.int32)
    batch = batch.replace(node_index=np.where(batch.node_index >= 0,
                                              stream_index[np.maximum(batch.node_index, 0)], -1))
    stats = PackingStats(num_sequences=len(pending), rows_used=int((free < row_length).sum()),
                         real_tokens=int(lengths.sum()), capacity=num_rows * row_length,
                         truncated_sequences=truncated, truncated_tokens=truncated_tokens)
    return batch, stats

  for index, sequence in enumerate(sequences):
    length = min(len(sequence[0]), row_length)
    if not np.any(sequence[1][1:length]):
      continue
    candidates = np.flatnonzero(free >= length)
    if not candidates.size:
      yield emit()
      pending, stream_indices, placed_rows = [], [], []
      free[:] = row_length
      candidates = np.array([0])
    pending.append(sequence)
    stream_indices.append(index)
    placed_rows.append(int(candidates[0]))
    free[candidates[0]] -= length
  if pending:
    yield emit()
