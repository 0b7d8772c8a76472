"""scripts/probe_warm_start.py: which policy tokens lie inside an item name."""
import importlib.util
import os

from rao_jax import tokenizer as tokenizer_lib

_SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "probe_warm_start.py")


def _probe_module():
  spec = importlib.util.spec_from_file_location("probe_warm_start", _SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_item_token_mask_marks_the_tokens_of_whole_item_names(tmp_path):
  tokenizer = tokenizer_lib.train_sentencepiece(tokenizer_lib.builtin_corpus(100),
                                                model_prefix=str(tmp_path / "t"), vocab_size=400)
  text = 'get_info(["t8_i1_4", "raw_t2"])  # t8_i1x is not an item'
  ids = tokenizer.encode(text)
  mask = _probe_module().item_token_mask(tokenizer, ids, ("t8_i1", "t8_i1_4", "raw_t2"))
  pieces = [tokenizer.decode([i]) for i in ids]
  assert "".join(pieces) == text
  marked_runs = "".join(p if m else "|" for p, m in zip(pieces, mask)).split("|")
  assert [run for run in marked_runs if run] == ["t8_i1_4", "raw_t2"]  # not "t8_i1" inside "t8_i1x"
