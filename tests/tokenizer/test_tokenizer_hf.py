"""Hugging Face tokenizer adapter, on a tiny byte-level BPE with Qwen's special tokens (built by the conftest)."""
import hypothesis
import hypothesis.strategies as st
import pytest

from rao_jax import tokenizer as tokenizer_lib

QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # what the conftest builder adds


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory, build_qwen_like_tokenizer_json) -> str:
  return build_qwen_like_tokenizer_json(
      tmp_path_factory.mktemp("hf") / "qwen",
      tokenizer_config={"eos_token": "<|im_end|>", "pad_token": {"content": "<|endoftext|>"},
                        "bos_token": None})


@pytest.fixture(scope="module")
def hf_tokenizer(qwen_dir) -> tokenizer_lib.HFTokenizer:
  return tokenizer_lib.HFTokenizer(qwen_dir)


def test_ids_from_tokenizer_config(hf_tokenizer):
  assert hf_tokenizer.eos_id == hf_tokenizer.token_id("<|im_end|>")
  assert hf_tokenizer.pad_id == hf_tokenizer.token_id("<|endoftext|>")
  assert hf_tokenizer.bos_id is None
  assert hf_tokenizer.pad_id != hf_tokenizer.eos_id
  assert set(hf_tokenizer.special_tokens) == set(QWEN_SPECIALS)
  assert hf_tokenizer.vocab_size == 400


def test_special_strings_map_to_single_ids(hf_tokenizer):
  start, end = hf_tokenizer.token_id("<|im_start|>"), hf_tokenizer.token_id("<|im_end|>")
  ids = hf_tokenizer.encode("<|im_start|>user\nhi<|im_end|>\n")
  assert ids[0] == start and ids.count(end) == 1
  assert hf_tokenizer.decode(ids) == "<|im_start|>user\nhi<|im_end|>\n"


def test_token_id_unknown_raises(hf_tokenizer):
  with pytest.raises(KeyError, match="not a single token"):
    hf_tokenizer.token_id("<|system|>")


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(st.text(max_size=80))
def test_round_trip_any_text(hf_tokenizer, text):
  assert hf_tokenizer.decode(hf_tokenizer.encode(text)) == text


def test_load_tokenizer_dispatch(qwen_dir):
  assert isinstance(tokenizer_lib.load_tokenizer(qwen_dir), tokenizer_lib.HFTokenizer)
  assert isinstance(tokenizer_lib.load_tokenizer(qwen_dir + "/tokenizer.json"), tokenizer_lib.HFTokenizer)


def test_ids_from_model_config_and_explicit(tmp_path, build_qwen_like_tokenizer_json):
  directory = build_qwen_like_tokenizer_json(
      tmp_path / "m", config={"eos_token_id": [2, 0], "pad_token_id": 0})
  tok = tokenizer_lib.HFTokenizer(directory)
  assert (tok.eos_id, tok.pad_id) == (2, 0)
  tok = tokenizer_lib.HFTokenizer(directory, pad_id=1, eos_id=1)
  assert (tok.eos_id, tok.pad_id) == (1, 1)


def test_missing_ids_raise_clear_errors(tmp_path, build_qwen_like_tokenizer_json):
  directory = build_qwen_like_tokenizer_json(tmp_path / "bare")
  with pytest.raises(ValueError, match="pass eos_id= / pad_id="):
    tokenizer_lib.HFTokenizer(directory)
  with pytest.raises(ValueError, match="outside the vocabulary"):
    tokenizer_lib.HFTokenizer(directory, pad_id=0, eos_id=10_000)
  with pytest.raises(FileNotFoundError):
    tokenizer_lib.HFTokenizer(str(tmp_path / "nothing"))


def test_decode_rejects_ids_outside_the_vocabulary(hf_tokenizer):
  with pytest.raises(ValueError, match=r"\[400, -1\] are outside the tokenizer's vocabulary \[0, 400\)"):
    hf_tokenizer.decode([5, 400, -1])
