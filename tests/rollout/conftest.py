"""Fixtures for rollout-engine tests: a toy tokenizer, a small world's tasks and expert transcripts."""
import pytest

from rao_jax import tokenizer as tokenizer_lib
from rao_jax.agent import corpus, episode
from rao_jax.envs.textcraft_synth import env as env_lib
from rao_jax.envs.textcraft_synth import solvers, tasks as tasks_lib, world as world_lib

ENV_NAME = "textcraft_synth"
ENV_CONFIG = {"world": "small"}


@pytest.fixture(scope="session")
def small_tasks():
  """A few train tasks per difficulty of the small world."""
  world = world_lib.get_world("small")
  splits = tasks_lib.build_splits(world, tasks_lib.TaskConfig(num_train=200, num_val=20))
  by_difficulty = {}
  for task in splits["train"]:
    by_difficulty.setdefault(task.difficulty, []).append(task)
  return by_difficulty


@pytest.fixture(scope="session")
def toy_tokenizer(tmp_path_factory, small_tasks):
  """SentencePiece trained on the built-in corpus and expert transcripts (turn markers single tokens)."""
  texts = list(corpus.builtin_corpus(num_examples=300))
  for task in small_tasks["easy"][:4] + small_tasks["medium"][:2]:
    transcript = solvers.solve(env_lib.make_root_environment(ENV_CONFIG, task.to_dict()),
                               solvers.RECURSIVE)
    for node in transcript.nodes():
      for i, turn in enumerate(node.turns, start=1):
        texts.append(episode.assistant_text(turn))
        texts.append(episode.observation_text(i, turn.output or ""))
  prefix = str(tmp_path_factory.mktemp("tokenizer") / "toy")
  return tokenizer_lib.train_sentencepiece(texts, model_prefix=prefix, vocab_size=1024)
