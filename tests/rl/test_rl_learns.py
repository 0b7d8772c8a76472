"""RL raises reward: the real pipeline (engine rollouts, tree advantages, packing, train step) moves a
deliberately imperfect policy toward reward on environments whose best policy is known, and does not
when the advantage's sign is flipped.

The policy is a 1-layer model warm-started by a few supervised steps on demonstrations that pick the
rewarded word in only 1 of 8 cases (`rao_jax.envs.diagnostics`); RL then has to find the answer from
reward alone. Every run is seeded, so the curves are reproducible on one machine.

Tree credit (a root that learns what to delegate only through its own advantage, "diagnostic_relay")
is shown through the generic trainer in tests/train/test_generic_trainer_e2e.py.
"""
from __future__ import annotations

import dataclasses

import jax
import pytest
from flax import nnx

from rao_jax import tokenizer as tokenizer_lib
from rao_jax.agent import episode, prompts
from rao_jax.agent.chat import ToyChatLayout
from rao_jax.agent.interpreter.pool import InterpreterConfig, InterpreterPool
from rao_jax.envs import diagnostics
from rao_jax.envs.base import PromptParts
from rao_jax.model.config import ModelConfig
from rao_jax.model.transformer import Transformer
from rao_jax.rl.advantages import AdvantageConfig
from rao_jax.rollout.config import RolloutConfig
from rao_jax.rollout.engine import RolloutEngine
from rao_jax.sharding import make_mesh
from rao_jax.train import policy_update, sft
from rao_jax.train.optimizer import OptimizerConfig
from rao_jax.train.policy_update import PolicyUpdater, UpdateConfig
from rao_jax.train.train_step import TrainStepConfig

pytestmark = pytest.mark.e2e

ANSWER = "red"
WRONG = ("blue", "green", "gold")
MODEL = ModelConfig(vocab_size=512, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, head_dim=16,
                    intermediate_size=64, rope_theta=10_000.0, tie_embeddings=True)
ROLLOUT = RolloutConfig(num_slots=32, context_window=96, completion_limit=24, max_steps_per_node=3,
                        max_depth=1, prompt_style="minimal", decode_steps_per_round=24,
                        prefill_chunk_buckets=(32, 96), prefill_row_buckets=(32,))
TASKS_PER_STEP, SAMPLES_PER_TASK = 4, 8       # 32 trees per RL step
MEASURE_TREES = 64                            # success before and after training, at temperature 1
RL_STEPS = 24
SFT = sft.SFTConfig(optimizer=OptimizerConfig(learning_rate=1e-2, weight_decay=0.0, warmup_steps=5),
                    num_steps=120, rows_per_batch=8, row_length=96, seed=0)


def _cell(code: str) -> str:
  return f"<python>\n{code}\n</python>"


def _node(parts: PromptParts, turns, layout, depth: int):
  return episode.render_node(layout, parts, turns, depth, ROLLOUT.episode)


def _choice_demos(layout) -> list:
  """One demonstration in 8 finishes with the answer."""
  parts = diagnostics.ChoiceNode(ANSWER).prompt_parts(True)
  words = [ANSWER] + [WRONG[i % len(WRONG)] for i in range(7)]
  return [_node(parts, [(_cell(f"finish({word!r})"), None)], layout, 0) for word in words]


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
  """A SentencePiece model trained on the diagnostic environments' prompts and turns."""
  texts = []
  for node in (diagnostics.ChoiceNode(ANSWER), diagnostics.RelayNode({"word": None}, ANSWER)):
    for delegation in (True, False):
      texts += prompts.node_prompt(node.prompt_parts(delegation), delegation=delegation,
                                   step_budget=ROLLOUT.max_steps_per_node, style=ROLLOUT.prompt_style)
  for word in diagnostics.WORDS:
    texts += [_cell(f"finish({word!r})"), _cell(f"await launch_subagent({word!r})"),
              _cell("write()\nfinish('done')"), f"Write {word}.", "[Cell 1 Output]\n'done'"]
  prefix = str(tmp_path_factory.mktemp("diagnostic_tokenizer") / "sp")
  tokenizer = tokenizer_lib.train_sentencepiece(20 * texts, model_prefix=prefix, vocab_size=MODEL.vocab_size,
                                                whole_words=diagnostics.WORDS)
  assert tokenizer.vocab_size <= MODEL.vocab_size
  return ToyChatLayout(tokenizer)


@pytest.fixture(scope="module")
def pool():
  config = InterpreterConfig()
  with_pool = InterpreterPool(config)
  yield with_pool
  with_pool.close()


def _imperfect_policy(demos, layout) -> Transformer:
  model = Transformer(MODEL, rngs=nnx.Rngs(0))
  config = dataclasses.replace(SFT, vocab_limit=layout.tokenizer.vocab_size)
  model, _ = sft.train_sft(model, demos, config, mesh=make_mesh())
  return model


@pytest.fixture(scope="module")
def choice_policy(layout):
  return _imperfect_policy(_choice_demos(layout), layout)


def _success(engine: RolloutEngine, env_name: str, num_trees: int, key: jax.Array) -> float:
  tasks = [{"answer": ANSWER}] * (num_trees // SAMPLES_PER_TASK)
  trees = engine.run(env_name, {}, tasks, SAMPLES_PER_TASK, key).trees
  return float(trees.success[trees.roots()].mean())


def _train(model, layout, pool, env_name: str, loss: str, learning_rate: float) -> tuple[float, float, list[float]]:
  """(success before, success after, per-step training success) of RL_STEPS RAO updates of `model`."""
  loss_options = (("clip_max", 5.0),) if loss == "cispo" else ()
  config = UpdateConfig(advantage=AdvantageConfig(), optimizer=OptimizerConfig(learning_rate=learning_rate),
                        train_step=TrainStepConfig(loss=loss, loss_options=loss_options),
                        row_length=ROLLOUT.context_window, rows_per_micro_batch=8)
  updater = PolicyUpdater(model, config, make_mesh(), vocab_limit=layout.tokenizer.vocab_size)
  engine = RolloutEngine(model, layout, pool, ROLLOUT)
  key = jax.random.key(1)
  before = _success(engine, env_name, MEASURE_TREES, jax.random.fold_in(key, 1000))
  curve = []
  for step in range(RL_STEPS):
    tasks = [{"answer": ANSWER}] * TASKS_PER_STEP
    trees = engine.run(env_name, {}, tasks, SAMPLES_PER_TASK, jax.random.fold_in(key, step)).trees
    curve.append(float(trees.success[trees.roots()].mean()))
    updater.update(trees)
    engine.set_params(updater.params)
  after = _success(engine, env_name, MEASURE_TREES, jax.random.fold_in(key, 1001))
  return before, after, curve


def _flipped(advantages_fn):
  """`advantages_from_trees` with every advantage negated: the update then moves away from reward."""
  def flipped(*args, **kwargs):
    result = advantages_fn(*args, **kwargs)
    return result.replace(advantage=-result.advantage)
  return flipped


LOSSES = {"cispo": 3e-3, "ppo_clip": 3e-3, "reinforce": 3e-3}


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_rl_raises_success(choice_policy, layout, pool, loss):
  before, after, curve = _train(choice_policy, layout, pool, diagnostics.CHOICE, loss, LOSSES[loss])
  assert before <= 0.3, (before, curve)
  assert after >= 0.8, (before, after, curve)


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_flipped_advantage_does_not_raise_success(choice_policy, layout, pool, loss, monkeypatch):
  monkeypatch.setattr(policy_update, "advantages_from_trees", _flipped(policy_update.advantages_from_trees))
  before, after, curve = _train(choice_policy, layout, pool, diagnostics.CHOICE, loss, LOSSES[loss])
  assert before <= 0.3, (before, curve)
  assert after <= before, (before, after, curve)
