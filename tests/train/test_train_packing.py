"""Packing node sequences into fixed rows: placement, segments, positions, targets, node indices, overflow."""
import numpy as np
import pytest

from rao_jax.agent.chat import Conversation
from rao_jax.train import packing


def _unpack(batch, index):
  """The tokens, loss mask and log-probs that sequence `index` left in the batch, in order."""
  where = np.asarray(batch.node_index) == index
  return batch.tokens[where], batch.loss_mask[where], batch.old_log_probs[where]


def test_every_sequence_lands_intact_in_its_own_segment(make_sequences):
  sequences = make_sequences([9, 3, 14, 2, 7, 16, 5])
  batch, stats = packing.pack_sequences(sequences, num_rows=4, row_length=16)
  assert batch.tokens.shape == (4, 16) and batch.tokens.dtype == np.int32
  for i, (tokens, mask, log_probs) in enumerate(sequences):
    got_tokens, got_mask, got_log_probs = _unpack(batch, i)
    np.testing.assert_array_equal(got_tokens, tokens)
    np.testing.assert_array_equal(got_mask, mask)  # mask[0] is False: the first token has no target
    np.testing.assert_array_equal(got_log_probs, np.where(mask, log_probs, 0.0))
    rows = np.flatnonzero((batch.node_index == i).any(axis=1))
    assert len(rows) == 1  # a sequence is never split across rows
    segment = batch.segment_ids[batch.node_index == i]
    assert len(set(segment.tolist())) == 1 and segment[0] >= 1
    np.testing.assert_array_equal(batch.positions[batch.node_index == i], np.arange(len(tokens)))
  assert stats.real_tokens == sum(len(s[0]) for s in sequences) == int((batch.segment_ids > 0).sum())
  assert stats.num_sequences == 7 and stats.truncated_sequences == 0
  # Padding: segment 0, node -1, no loss.
  padding = batch.segment_ids == 0
  assert (batch.node_index[padding] == -1).all() and not batch.loss_mask[padding].any()


def test_segments_count_from_one_per_row_and_rows_are_contiguous(make_sequences):
  batch, _ = packing.pack_sequences(make_sequences([4, 4, 4, 4, 4]), num_rows=2, row_length=12)
  for row in batch.segment_ids:
    used = row[row > 0]
    assert (np.diff(used) >= 0).all() and used[0] == 1 and set(used) == set(range(1, used.max() + 1))
    assert (row[len(used):] == 0).all()  # padding only at the end of a row


def test_first_token_of_a_segment_never_carries_loss():
  tokens = np.arange(5, dtype=np.int32)
  all_model = (tokens, np.ones(5, bool), np.full(5, -1.0, np.float32))
  batch, _ = packing.pack_sequences([all_model, all_model], num_rows=1, row_length=10)
  np.testing.assert_array_equal(batch.loss_mask[0], [0, 1, 1, 1, 1, 0, 1, 1, 1, 1])


def test_first_fit_decreasing_places_largest_first():
  rows = packing.first_fit_decreasing(np.array([3, 7, 5, 5]), num_rows=3, row_length=10)
  np.testing.assert_array_equal(rows, [0, 0, 1, 1])  # 7 then 5 (new row) then 5 then 3 fills row 0
  assert (packing.first_fit_decreasing(np.array([6, 6, 6]), num_rows=2, row_length=10) == [0, 1, -1]).all()


def test_first_fit_decreasing_placement_does_not_depend_on_spare_rows():
  lengths = np.random.default_rng(0).integers(1, 11, 40)
  tight = packing.first_fit_decreasing(lengths, num_rows=40, row_length=10)
  assert (tight >= 0).all()
  np.testing.assert_array_equal(packing.first_fit_decreasing(lengths, tight.max() + 1, 10), tight)


def test_pack_blocks_uses_the_fewest_whole_blocks(make_sequences):
  sequences = make_sequences([9, 3, 14, 2, 7, 16, 5, 11, 8])
  untrained = (sequences[1][0], np.zeros(3, bool), np.zeros(3, np.float32))
  sequences[1] = untrained  # no generated token: left out, not counted
  batch, stats = packing.pack_blocks(sequences, block_rows=2, row_length=16)
  trainable_lengths = [len(s[0]) for s in sequences if s[1][1:].any()]
  rows_needed = int(packing.first_fit_decreasing(trainable_lengths, 9, 16).max()) + 1
  assert stats.rows_used == rows_needed == 5 and batch.num_rows == 6 and batch.row_length == 16
  # The same placement as a fixed-size batch of that many rows, node_index = sequence index.
  fixed, fixed_stats = packing.pack_sequences(sequences, num_rows=6, row_length=16)
  for field in ("tokens", "positions", "segment_ids", "loss_mask", "old_log_probs", "node_index"):
    np.testing.assert_array_equal(getattr(batch, field), getattr(fixed, field))
  assert stats == fixed_stats and 1 not in batch.node_index
  assert packing.pack_blocks(sequences, block_rows=5, row_length=16)[0].num_rows == 5
  empty, empty_stats = packing.pack_blocks([untrained], block_rows=2, row_length=16)
  assert empty.num_rows == 2 and (empty.node_index == -1).all() and empty_stats.num_sequences == 0
  with pytest.raises(ValueError, match="block_rows >= 1"):
    packing.pack_blocks(sequences, block_rows=0, row_length=16)


def test_long_sequences_are_truncated_and_counted_or_rejected(make_sequences):
  sequences = make_sequences([12, 4])
  batch, stats = packing.pack_sequences(sequences, num_rows=2, row_length=8)
  assert stats.truncated_sequences == 1 and stats.truncated_tokens == 4
  np.testing.assert_array_equal(_unpack(batch, 0)[0], sequences[0][0][:8])
  with pytest.raises(ValueError, match="longer than the row length"):
    packing.pack_sequences(sequences, num_rows=2, row_length=8, overflow="error")


def test_too_many_sequences_raise_with_the_rows_needed(make_sequences):
  with pytest.raises(ValueError, match="need 3 rows"):
    packing.pack_sequences(make_sequences([8, 8, 8]), num_rows=2, row_length=8)


def test_bad_inputs_raise_clear_errors(make_sequences):
  tokens, mask, log_probs = make_sequences([6])[0]
  with pytest.raises(ValueError, match="mask"):
    packing.pack_sequences([(tokens, mask[:3], log_probs)], 1, 8)
  with pytest.raises(ValueError, match="overflow"):
    packing.pack_sequences([(tokens, mask, log_probs)], 1, 8, overflow="drop")
  with pytest.raises(ValueError, match="num_rows"):
    packing.pack_sequences([(tokens, mask, log_probs)], 0, 8)


def test_micro_batches_split_rows_in_order(make_sequences):
  batch, _ = packing.pack_sequences(make_sequences([7, 7, 7, 7]), num_rows=4, row_length=8)
  micro = batch.micro_batches(2)
  assert micro.tokens.shape == (2, 2, 8)
  np.testing.assert_array_equal(micro.tokens.reshape(4, 8), batch.tokens)
  with pytest.raises(ValueError, match="micro-batches"):
    batch.micro_batches(3)


def test_pack_stream_covers_every_sequence_once(make_sequences):
  sequences = make_sequences([5, 9, 2, 8, 8, 3, 6, 7, 1])  # the last has no token to train on
  batches = list(packing.pack_stream(iter(sequences), num_rows=2, row_length=10))
  assert len(batches) > 1
  seen = []
  for batch, stats in batches:
    assert batch.tokens.shape == (2, 10)
    indices = np.unique(batch.node_index[batch.node_index >= 0])
    seen.extend(indices.tolist())
    for i in indices:
      np.testing.assert_array_equal(_unpack(batch, i)[0], sequences[i][0])
    assert stats.num_sequences == len(indices)
  assert sorted(seen) == list(range(len(sequences) - 1))


def test_conversation_sequence_uses_model_provenance_and_nan_log_probs():
  conversation = Conversation()
  conversation.append_env([1, 2, 3])
  conversation.append_model([4, 5])
  tokens, mask, log_probs = packing.conversation_sequence(conversation)
  np.testing.assert_array_equal(mask, [0, 0, 0, 1, 1])
  assert np.isnan(log_probs[3:]).all()
  batch, _ = packing.pack_sequences([(tokens, mask, log_probs)], 1, 6)
  assert np.isnan(batch.old_log_probs[0, 3:5]).all() and (batch.old_log_probs[0, :3] == 0).all()


def test_sequences_without_trainable_tokens_are_left_out(make_sequences):
  trained, untrained = make_sequences([6, 5])
  untrained = (untrained[0], np.zeros(5, bool), np.zeros(5, np.float32))
  batch, stats = packing.pack_sequences([untrained, trained], 1, 8)
  assert stats.num_sequences == 1 and stats.real_tokens == 6
  assert set(np.unique(batch.node_index).tolist()) == {-1, 1}
