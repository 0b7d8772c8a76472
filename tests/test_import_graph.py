"""The package's import graph runs one way: no arrow back up the layers, the tokenizer is a leaf,
environments never import the agent to render, and nothing generic imports a particular benchmark."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Lower layers never import higher ones; modules of one layer may import each other.
LAYERS = (
    ("rao_jax.errors", "rao_jax.tokenizer", "rao_jax.sharding", "rao_jax.distributed", "rao_jax.hlo_inspect",
     "rao_jax.host_memory"),
    ("rao_jax.model",),
    ("rao_jax.config_utils", "rao_jax.envs", "rao_jax.roofline"),
    ("rao_jax.agent",),
    ("rao_jax.rollout", "rao_jax.viz"),
    ("rao_jax.rl",),
    ("rao_jax.train", "rao_jax.aot"),
)
# Benchmark-specific packages: only the registry (lazily, by name) and their own package may reach them.
SPECIFIC = ("rao_jax.envs.textcraft_synth", "rao_jax.envs.diagnostics", "rao_jax.envs.long_context",
            "rao_jax.envs.chained_research")
GENERIC = ("rao_jax.agent", "rao_jax.rollout", "rao_jax.rl", "rao_jax.train", "rao_jax.model")


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> set[str]:
  """Every rao_jax module `path` imports (`from rao_jax import x` counts as rao_jax.x)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rao_jax"):
      found.update(f"{node.module}.{a.name}" if node.module == "rao_jax" else node.module for a in node.names)
    elif isinstance(node, ast.Import):
      found.update(a.name for a in node.names if a.name.startswith("rao_jax"))
  return found


def _graph(*directories: str) -> dict[str, set[str]]:
  return {_module_name(p) if p.is_relative_to(ROOT / "rao_jax") else str(p.relative_to(ROOT)): _imports(p)
          for d in directories for p in (ROOT / d).rglob("*.py")}


def _within(module: str, prefixes) -> bool:
  return any(module == p or module.startswith(p + ".") for p in prefixes)


def _layer(module: str) -> int:
  for index, prefixes in enumerate(LAYERS):
    if _within(module, prefixes):
      return index
  raise AssertionError(f"{module} is in no layer of this test; add it to LAYERS")


def test_no_import_runs_back_up_the_layers():
  upward = [(a, b) for a, imported in _graph("rao_jax").items() if a != "rao_jax"
            for b in imported if _layer(b) > _layer(a)]
  assert not upward, upward


def test_the_tokenizer_is_a_leaf_and_envs_never_import_the_agent():
  graph = _graph("rao_jax")
  assert not graph["rao_jax.tokenizer"] - {"rao_jax.errors"}
  envs = {a: {b for b in imported if _within(b, ("rao_jax.agent",))}
          for a, imported in graph.items() if _within(a, ("rao_jax.envs",))}
  assert not any(envs.values()), envs


@pytest.mark.parametrize("directory", ["rao_jax", "experiments"])
def test_generic_code_imports_no_particular_benchmark(directory):
  specific = {a: {b for b in imported if _within(b, SPECIFIC)} for a, imported in _graph(directory).items()
              if directory == "experiments" or _within(a, GENERIC)}
  assert not any(specific.values()), {a: b for a, b in specific.items() if b}


def test_the_checker_sees_a_violation(tmp_path):
  """The graph is read from the source: an upward import written into a file is found."""
  module = tmp_path / "bad.py"
  module.write_text("from rao_jax.train import trainer\nfrom rao_jax import tokenizer\n")
  assert _imports(module) == {"rao_jax.train", "rao_jax.tokenizer"}
  assert _layer("rao_jax.train.trainer") > _layer("rao_jax.agent.chat")
