"""The tokenizer is a leaf module: nothing in rao_jax is imported by it, and its tags match the agent's."""
from __future__ import annotations

import ast
import inspect

from rao_jax import tokenizer as tokenizer_lib
from rao_jax.agent import turn_format


def _imported_modules(source: str) -> set[str]:
  """Every module named by an import statement anywhere in `source` (relative imports as '.name')."""
  modules = set()
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      modules.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      modules.add("." * node.level + (node.module or ""))
  return modules


def test_tokenizer_imports_nothing_from_rao_jax():
  modules = _imported_modules(inspect.getsource(tokenizer_lib))
  assert "sentencepiece" in modules  # the walk sees the module's imports
  assert not [m for m in modules if m.split(".")[0] == "rao_jax" or m.startswith(".")], modules


def test_turn_tags_agree_with_the_turn_format():
  assert tokenizer_lib.TURN_TAGS == (turn_format.THOUGHT_OPEN, turn_format.THOUGHT_CLOSE,
                                     turn_format.CODE_OPEN, turn_format.CODE_CLOSE)
  assert set(tokenizer_lib.TURN_TAGS) <= set(tokenizer_lib.CHAT_SPECIAL_TOKENS)
