"""Chat layouts: exact provenance masks, round trips, and the turn-close edge cases."""
import json

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest
import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

from rao_jax import tokenizer as tokenizer_lib
from rao_jax.agent import chat, corpus, turn_format

SYSTEM = "Rules: craft on top of what you own."
USER = "Goal: Craft the following items: 2x plank"
COMPLETIONS = [
    turn_format.render_assistant_turn("Look first.", "print(view_inventory())"),
    turn_format.render_assistant_turn("Craft now.", "print(craft({'log': 1}, ('plank', 2)))"),
]
OBSERVATIONS = [turn_format.render_observation(1, "{'log': 1}"),
                turn_format.render_observation(2, "Crafted 2 plank.")]


@pytest.fixture(scope="module")
def toy_tokenizer(tmp_path_factory):
  return tokenizer_lib.train_sentencepiece(
      corpus.builtin_corpus(300), model_prefix=str(tmp_path_factory.mktemp("sp") / "t"),
      vocab_size=500)


@pytest.fixture(scope="module")
def qwen_tokenizer(tmp_path_factory):
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(corpus.builtin_corpus(200), trainers.BpeTrainer(
      vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  directory = tmp_path_factory.mktemp("qwen")
  tok.save(str(directory / "tokenizer.json"))
  (directory / "tokenizer_config.json").write_text(
      json.dumps({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}))
  return tokenizer_lib.HFTokenizer(str(directory))


@pytest.fixture(params=["toy", "qwen3"])
def layout(request, toy_tokenizer, qwen_tokenizer) -> chat.ChatLayout:
  if request.param == "toy":
    return chat.ToyChatLayout(toy_tokenizer)
  return chat.Qwen3ChatLayout(qwen_tokenizer)


def run_episode(layout: chat.ChatLayout):
  """Builds a two-turn conversation; returns it and the (start, end) of each completion."""
  conversation = layout.start(SYSTEM, USER)
  model_spans = []
  for i, (completion, observation) in enumerate(zip(COMPLETIONS, OBSERVATIONS)):
    ids = layout.tokenizer.encode(completion)
    logprobs = -np.arange(1, len(ids) + 1, dtype=np.float32) / 10
    start = len(conversation)
    pending = layout.add_turn(conversation, ids, logprobs, observation if i == 0 else None)
    model_spans.append((start, start + len(ids)))
    assert (pending == []) == (i == 1)
  return conversation, model_spans


def test_loss_mask_covers_exactly_the_model_tokens(layout):
  conversation, model_spans = run_episode(layout)
  expected = np.zeros(len(conversation), dtype=bool)
  for start, end in model_spans:
    expected[start:end] = True
  np.testing.assert_array_equal(conversation.loss_mask(), expected)
  assert [(p, s, e) for p, s, e in conversation.spans() if p == chat.Provenance.MODEL] == [
      (chat.Provenance.MODEL, s, e) for s, e in model_spans]
  logprobs = conversation.sampler_logprobs()
  assert np.all(logprobs[~expected] == 0.0) and np.all(logprobs[expected] < 0)
  assert conversation.token_ids().dtype == np.int32


def test_model_tokens_are_kept_as_sampled(layout):
  conversation = layout.start(SYSTEM, USER)
  odd_split = [layout.tokenizer.encode(c)[0] for c in "print"]  # not how encode("print") splits
  layout.add_turn(conversation, odd_split, None, OBSERVATIONS[0])
  start = len(layout.prompt_ids(SYSTEM, USER))
  assert conversation.ids[start:start + len(odd_split)] == odd_split
  assert np.isnan(conversation.sampler_logprobs()[start:start + len(odd_split)]).all()


def test_decoded_episode_is_the_rendered_chat(layout):
  conversation, _ = run_episode(layout)
  text = layout.tokenizer.decode(conversation.ids)
  a, u = layout.role_open[chat.ASSISTANT], layout.role_open[chat.USER]
  close = layout.turn_close
  expected = (layout.render_turn(chat.SYSTEM, SYSTEM) + layout.render_turn(chat.USER, USER) + a
              + COMPLETIONS[0] + close + u + OBSERVATIONS[0] + close + a + COMPLETIONS[1])
  assert text == expected


def test_qwen3_prompt_is_chatml(qwen_tokenizer):
  layout = chat.Qwen3ChatLayout(qwen_tokenizer)
  assert layout.prompt_text("S", "U") == (
      "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n")
  assert layout.continuation_text("O", []) == (
      "<|im_end|>\n<|im_start|>user\nO<|im_end|>\n<|im_start|>assistant\n")
  assert layout.prompt_text("", "U") == "<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
  think = chat.Qwen3ChatLayout(qwen_tokenizer, empty_think_block=True)
  assert think.prompt_text("S", "U").endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_toy_prompt_uses_single_token_markers(toy_tokenizer):
  layout = chat.ToyChatLayout(toy_tokenizer)
  assert layout.prompt_text("S", "U") == "<|system|>S<|end|><|user|>U<|end|><|assistant|>"
  ids = layout.prompt_ids("S", "U")
  specials = toy_tokenizer.special_tokens
  assert ids[0] == specials["<|system|>"] and ids[-1] == specials["<|assistant|>"]
  assert ids.count(specials["<|end|>"]) == 2


def test_completion_that_closed_its_turn_gets_no_second_close(layout):
  close_id = layout.close_marker_id
  ids = layout.tokenizer.encode(COMPLETIONS[0]) + [close_id]
  continuation = layout.continuation_ids(OBSERVATIONS[0], ids)
  assert continuation[0] != close_id
  assert layout.tokenizer.decode(ids + continuation).count(layout.close_marker) == 2  # own + user turn


def test_last_model_ids():
  conversation = chat.Conversation()
  assert conversation.last_model_ids() == []
  conversation.append_env([1, 2])
  conversation.append_model([3, 4], [-0.1, -0.2])
  assert conversation.last_model_ids() == [3, 4]
  conversation.append_env([5])
  assert conversation.last_model_ids() == []
  with pytest.raises(ValueError, match="2 model tokens but 1 log-probs"):
    conversation.append_model([6, 7], [-0.5])


def test_layout_for_picks_by_tokenizer(toy_tokenizer, qwen_tokenizer):
  assert isinstance(chat.layout_for(toy_tokenizer), chat.ToyChatLayout)
  assert isinstance(chat.layout_for(qwen_tokenizer), chat.Qwen3ChatLayout)


def test_layouts_reject_tokenizers_without_their_markers(toy_tokenizer, qwen_tokenizer):
  with pytest.raises(ValueError, match=r"no single token for \['<\|im_start\|>', '<\|im_end\|>'\]"):
    chat.Qwen3ChatLayout(toy_tokenizer)
  with pytest.raises(ValueError, match="CHAT_SPECIAL_TOKENS"):
    chat.ToyChatLayout(qwen_tokenizer)


def test_unknown_role(toy_tokenizer):
  with pytest.raises(ValueError, match="unknown role 'tool'"):
    chat.ToyChatLayout(toy_tokenizer).render_turn("tool", "x")


@hypothesis.settings(max_examples=40, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(turns=st.lists(st.tuples(st.lists(st.integers(0, 399), min_size=1, max_size=12),
                                           st.text(max_size=30)), min_size=1, max_size=4))
def test_mask_is_exact_for_any_turns(layout, turns):
  conversation = layout.start("S", "U")
  expected = [False] * len(conversation)
  for completion, observation in turns:
    continuation = layout.add_turn(conversation, completion, None, observation)
    expected += [True] * len(completion) + [False] * len(continuation)
    assert continuation == layout.continuation_ids(observation, completion)
  np.testing.assert_array_equal(conversation.loss_mask(), np.asarray(expected))
  assert len(conversation.ids) == len(conversation.logprobs) == len(expected)
