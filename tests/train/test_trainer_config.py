"""Training configs: every preset validates into settings whose sections mirror the dataclasses, and bad
values fail before anything is built, naming the `--config.a.b` override that fixes them."""
import dataclasses
import importlib.util
import os
import pathlib

import ml_collections
import pytest

from rao_jax import config_utils
from rao_jax.envs.diagnostics import ChoiceSuite, RelaySuite
from rao_jax.envs.textcraft_synth.suite import TextCraftSuite
from rao_jax.train import settings as settings_lib
from rao_jax.train.settings import settings_from_config

_CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")


def _get_config(preset, file="textcraft.py"):
  spec = importlib.util.spec_from_file_location(f"config_{file}", os.path.join(_CONFIGS, file))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(preset)


@pytest.mark.parametrize("preset", ["tiny", "tiny_linear"])
def test_cpu_presets_validate(preset):
  settings = settings_from_config(_get_config(preset))
  assert settings.rollout.delegation == (preset == "tiny")
  assert isinstance(settings.suite(), TextCraftSuite)
  assert settings.greedy_rollout.sampling.greedy and not settings.rollout.sampling.greedy
  assert settings.policy_update.row_length >= settings.rollout.context_window
  # Set once: the run's seed and the phases' step counts reach the parts that need them.
  assert settings.warm_start.sft.seed == settings.warm_start.data.seed == settings.seed
  assert settings.warm_start.sft.optimizer.total_steps == settings.warm_start.sft.num_steps
  assert settings.policy_update.optimizer.total_steps == settings.rl.num_steps


@pytest.mark.parametrize("preset, suite", [("choice", ChoiceSuite), ("relay", RelaySuite)])
def test_diagnostic_presets_validate(preset, suite):
  settings = settings_from_config(_get_config(preset, "diagnostic.py"))
  assert isinstance(settings.suite(), suite)
  assert settings.suite().env_config == {}


@pytest.mark.parametrize("file, preset", [("textcraft.py", "tiny"), ("textcraft.py", "qwen3_4b"),
                                          ("textcraft.py", "qwen3_4b_v6e"), ("diagnostic.py", "relay")])
def test_config_sections_mirror_the_dataclasses_one_to_one(file, preset):
  """Every key of every section is a field of the section's dataclass (the builder rejects others),
  and building the settings back into a config gives the same settings."""
  cfg = _get_config(preset, file)
  if preset in settings_lib.CHECKPOINT_PRESETS:
    cfg.warm_start.checkpoint = "/models/Qwen3-4B"
  settings = settings_from_config(cfg)
  rebuilt = ml_collections.ConfigDict({
      "preset": settings.preset, "seed": settings.seed, "workdir": settings.workdir,
      "env": {"name": settings.env_name, **dataclasses.asdict(settings.env)},
      **{name: dataclasses.asdict(getattr(settings, name)) for name in settings_lib._SECTIONS}})
  assert settings_from_config(rebuilt) == settings


def test_linear_preset_differs_only_in_delegation():
  tiny, linear = settings_from_config(_get_config("tiny")), settings_from_config(_get_config("tiny_linear"))
  assert dataclasses.replace(linear.rollout, delegation=True) == tiny.rollout
  assert tiny.policy_update == linear.policy_update and tiny.model == linear.model
  assert tiny.warm_start.sft == linear.warm_start.sft and tiny.rl == linear.rl
  assert tiny.warm_start.data.recursive_fraction > 0 and linear.warm_start.data.recursive_fraction == 0


def test_qwen3_4b_preset_has_the_paper_hyper_parameters():
  cfg = _get_config("qwen3_4b")
  cfg.warm_start.checkpoint = "/models/Qwen3-4B"
  s = settings_from_config(cfg)
  assert (s.rl.tasks_per_step, s.rl.samples_per_task) == (16, 8)
  update = s.policy_update
  assert update.train_step.loss == "cispo" and dict(update.train_step.loss_options) == {"clip_max": 5.0}
  opt = update.optimizer
  assert (opt.learning_rate, opt.b1, opt.b2, opt.eps, opt.weight_decay, opt.max_grad_norm, opt.schedule) == (
      3e-6, 0.9, 0.95, 1e-8, 0.017, 1.0, "constant")
  assert s.rollout.context_window == 8192 and s.rollout.max_steps_per_node == 25 and s.rollout.max_depth == 6
  assert s.rollout.sampling.temperature == 1.0
  assert update.advantage.bonus_weight == 0.0 and update.advantage.depth_weighting == "inverse_frequency"
  assert s.rl.num_steps == 540 and s.data.train_difficulties == ("medium",)
  assert s.model.hidden_size == 2560 and s.model.num_layers == 36
  assert (s.model.param_dtype, s.model.dtype) == ("float32", "bfloat16")  # master weights, bf16 compute
  assert update.train_step.remat and update.train_step.attention_chunk_size == 1024  # 8K rows fit
  assert s.suite().env_config == {"world": "paper", "info_style": "full"} and s.env.transcript_style == "spec"
  assert s.rollout.prefill_attention_chunk_size == 512


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_master_weights_are_rejected(dtype):
  cfg = _get_config("tiny")
  cfg.model.param_dtype = dtype
  with pytest.raises(ValueError, match=rf"--config.model.param_dtype='{dtype}'.*rounds away.*param_dtype='float32'"):
    settings_from_config(cfg)


@pytest.mark.parametrize("preset", ["qwen3_4b", "qwen3_4b_v6e"])
def test_qwen3_4b_needs_a_checkpoint(preset):
  with pytest.raises(ValueError, match=f"--config.warm_start.checkpoint is required by the {preset} preset"):
    settings_from_config(_get_config(preset))


def test_qwen3_4b_presets_have_the_layouts_that_fit_their_chips():
  """The sizes the ahead-of-time compiles found to fit (docs/tpu_memory.md): v5p-8 with tensor 4 and
  prefills of <= 64 rows; v6e-8 with tensor 8, 64 slots, 4 rows a micro-batch, prefills of <= 32 rows.
  Everything else is the paper's, the same in both."""
  def settings(preset):
    cfg = _get_config(preset)
    cfg.warm_start.checkpoint = "/models/Qwen3-4B"
    return settings_from_config(cfg)
  v5p, v6e = settings("qwen3_4b"), settings("qwen3_4b_v6e")
  assert v5p.mesh.sizes == (-1, 1, 4) and v6e.mesh.sizes == (-1, 1, 8)
  assert max(v5p.rollout.prefill_row_buckets) == 64 and max(v6e.rollout.prefill_row_buckets) == 32
  assert (v5p.rollout.num_slots, v6e.rollout.num_slots) == (128, 64)
  assert (v5p.policy_update.rows_per_micro_batch, v6e.policy_update.rows_per_micro_batch) == (16, 4)
  # Tensor parallelism splits the KV cache by KV head: 8 heads divide over 4 and 8 chips.
  assert v5p.model.num_kv_heads % 4 == 0 and v6e.model.num_kv_heads % 8 == 0
  same = dataclasses.replace(v6e, preset="qwen3_4b", workdir=v5p.workdir, mesh=v5p.mesh,
                             rollout=v5p.rollout, policy_update=v5p.policy_update)
  assert same == v5p


def test_cpu_presets_put_every_device_on_data():
  for file, preset in (("textcraft.py", "tiny"), ("diagnostic.py", "choice")):
    assert settings_from_config(_get_config(preset, file)).mesh.sizes == (-1, 1, 1)


def test_a_mesh_the_devices_cannot_form_fails_before_anything_is_built(tmp_path):
  """`config.mesh` is the trainer's mesh: sizes that do not match the devices stop `build_run` before it
  writes data, a tokenizer or a warm start, naming the section."""
  import jax

  from rao_jax.train import trainer

  cfg = _get_config("choice", "diagnostic.py")
  cfg.workdir = str(tmp_path / "run")
  cfg.mesh.data, cfg.mesh.tensor = 1, jax.device_count() + 1
  with pytest.raises(ValueError, match=rf"--config\.mesh: .*need {jax.device_count() + 1} devices, "
                                       rf"have {jax.device_count()}"):
    trainer.build_run(settings_from_config(cfg))
  assert not (tmp_path / "run").exists()


def test_rl_tasks_come_from_data_split(tmp_path, monkeypatch):
  """`config.data.split` picks the RL tasks' split; the warm start and the tokenizer read "train" either
  way, so the tokenizer (and a warm start trained with it) does not change with the RL split or tiers."""
  from rao_jax.train import trainer

  fingerprints = []
  for split, max_tasks in (("train", 5), ("val", 0)):
    cfg = _get_config("choice", "diagnostic.py")
    cfg.workdir = str(tmp_path / "run")
    cfg.data.split, cfg.data.max_train_tasks = split, max_tasks
    settings = settings_from_config(cfg)
    suite_class = type(settings.suite())
    requested, load_tasks = [], suite_class.load_tasks

    def recording_load_tasks(self, name, data_dir, requested=requested, load_tasks=load_tasks):
      requested.append(name)
      return load_tasks(self, name, data_dir)

    monkeypatch.setattr(suite_class, "load_tasks", recording_load_tasks)
    run = trainer.build_run(settings, warm_start_policy=False)
    monkeypatch.undo()
    assert requested == (["train"] if split == "train" else ["train", split])
    assert len(run.train_tasks) == (max_tasks or cfg.env.num_tasks)
    fingerprints.append(run.identity.tokenizer_fingerprint)
  assert fingerprints[0] == fingerprints[1]


@pytest.mark.parametrize("file, preset", [("textcraft.py", "tiny"), ("textcraft.py", "tiny_linear"),
                                          ("textcraft.py", "qwen3_4b"), ("textcraft.py", "qwen3_4b_v6e"),
                                          ("diagnostic.py", "choice"), ("diagnostic.py", "relay")])
def test_every_preset_keeps_a_checkpoint_to_fall_back_to(file, preset):
  """A damaged latest checkpoint falls back to the previous kept one (`train.checkpoint`): a preset that
  keeps only one would have none left to fall back to."""
  assert _get_config(preset, file).checkpoint.max_to_keep >= 2


def test_unknown_preset():
  with pytest.raises(ValueError, match="unknown preset 'huge'"):
    _get_config("huge")


@pytest.mark.parametrize("path, value, message", [
    ("rollout.num_slots", 0, r"--config\.rollout\.num_slots=0 must be a positive integer"),
    ("rollout.completion_limit", 4096, r"--config\.rollout.*completion_limit=4096"),
    ("rollout.sampling.temperature", -1.0, r"--config\.rollout\.sampling\.temperature=-1\.0 must be >= 0"),
    ("rollout.prompt_style", "chatty", r"--config\.rollout.*prompt_style='chatty'"),
    ("rollout.prefill_attention_chunk_size", -2, r"--config\.rollout.*prefill_attention_chunk_size=-2"),
    ("policy_update.optimizer.learning_rate", -1.0,
     r"--config\.policy_update\.optimizer\.learning_rate=-1\.0 must be positive"),
    ("policy_update.optimizer.schedule", "cubic", r"--config\.policy_update\.optimizer\.schedule='cubic'"),
    ("policy_update.advantage.depth_weighting", "deep", r"--config\.policy_update\.advantage.*deep"),
    ("policy_update.train_step.loss", "dpo", r"--config\.policy_update\.train_step.*dpo"),
    ("policy_update.row_length", 128, r"--config\.policy_update\.row_length=128 must be >= "
                                      r"--config\.rollout\.context_window"),
    ("policy_update.train_step.attention_chunk_size", -1, r"--config\.policy_update\.train_step.*-1"),
    ("rl.samples_per_task", 1, r"--config\.rl\.samples_per_task=1 must be >= 2"),
    ("rl.tasks_per_step", 0, r"--config\.rl\.tasks_per_step=0 must be positive"),
    ("warm_start.sft.attention_chunk_size", -8, r"--config\.warm_start\.sft\.attention_chunk_size=-8"),
    ("warm_start.sft.optimizer.schedule", "cubic", r"--config\.warm_start\.sft\.optimizer\.schedule='cubic'"),
    ("warm_start.data.recursive_fraction", 1.5, r"--config\.warm_start\.data\.recursive_fraction=1\.5"),
    ("warm_start.data.difficulties", ("impossible",), r"--config\.warm_start\.data\.difficulties"),
    ("warm_start.data.recursive_difficulties", ("hard",),
     r"--config\.warm_start\.data\.recursive_difficulties=\('hard',\) names \['hard'\], which are not among"),
    ("model.num_heads", 3, r"--config\.model\.num_heads=3"),
    ("env.transcript_style", "chatty", r"--config\.env\.transcript_style='chatty'"),
    ("env.info_style", "verbose", r"--config\.env\.info_style='verbose'"),
    ("env.world", "mars", r"--config\.env\.world='mars'"),
    ("env.dataset", "paper", r"--config\.env\.dataset='paper' was generated in another world"),
    ("env.name", "chess", r"--config\.env\.name='chess' is not one of"),
    ("interpreter.cell_time_limit_s", 0, r"--config\.interpreter.*cell_time_limit_s"),
    ("eval.split", "test", r"--config\.eval\.split='test'"),
    ("data.split", "test", r"--config\.data\.split='test' is not one of \('train', 'val'\)"),
    ("eval.difficulties", ("easy", "impossible"), r"--config\.eval\.difficulties"),
    ("data.train_difficulties", (), r"--config\.data\.train_difficulties"),
    ("log.train_trees_every", -1, r"--config\.log\.train_trees_every=-1"),
    ("checkpoint.every_steps", 0, r"--config\.checkpoint\.every_steps=0"),
    ("tokenizer.vocab_size", 5000, r"--config\.tokenizer\.vocab_size=5000 exceeds --config\.model\.vocab_size"),
    ("mesh.tensor", 0, r"--config\.mesh\.tensor=0 must be a positive mesh size or -1"),
    ("mesh.fsdp", -3, r"--config\.mesh\.fsdp=-3 must be a positive mesh size or -1"),
    ("mesh.fsdp", -1, r"--config\.mesh\.fsdp=-1 must be a size: only one of data, fsdp, tensor may be -1, "
                      r"and data already is"),
])
def test_bad_values_name_the_override(path, value, message):
  cfg = _get_config("tiny")
  *sections, field = path.split(".")
  section = cfg
  for name in sections:
    section = section[name]
  section[field] = value
  with pytest.raises(ValueError, match=message):
    settings_from_config(cfg)


def test_unknown_and_missing_settings_are_named():
  cfg = _get_config("tiny")
  cfg.rollout.num_slotz = 8
  with pytest.raises(ValueError, match=r"--config\.rollout\.num_slotz is not a setting of RolloutConfig"):
    settings_from_config(cfg)
  cfg = _get_config("tiny")
  del cfg.model["hidden_size"]
  with pytest.raises(ValueError, match=r"--config\.model\.hidden_size is missing"):
    settings_from_config(cfg)
  cfg = _get_config("tiny")
  del cfg["rl"]
  with pytest.raises(ValueError, match=r"config\.rl is missing"):
    settings_from_config(cfg)


def test_linear_preset_rejects_delegating_warm_start():
  cfg = _get_config("tiny_linear")
  cfg.warm_start.data.recursive_fraction = 0.5
  with pytest.raises(ValueError, match=r"--config\.warm_start\.data\.recursive_fraction=0\.5.*delegation=False"):
    settings_from_config(cfg)


def test_builder_builds_nested_sections_and_keeps_defaults():
  @dataclasses.dataclass(frozen=True)
  class Inner:
    size: int = 1
    names: tuple[str, ...] = ()

  @dataclasses.dataclass(frozen=True)
  class Outer:
    inner: Inner
    rate: float = 0.5

  built = config_utils.build(Outer, {"inner": {"names": ["a", "b"]}, "rate": 1}, "outer")
  assert built == Outer(inner=Inner(size=1, names=("a", "b")), rate=1.0)
  assert config_utils.build(Outer, {}, "outer") == Outer(inner=Inner())
  with pytest.raises(ValueError, match=r"--config\.outer\.inner\.size=True must be an integer"):
    config_utils.build(Outer, {"inner": {"size": True}}, "outer")
  with pytest.raises(ValueError, match=r"--config\.outer\.inner must be a section"):
    config_utils.build(Outer, {"inner": 3}, "outer")


def test_sibling_config_loads_another_config_files_preset(tmp_path):
  configs = pathlib.Path(__file__).parents[2] / "configs"
  textcraft = config_utils.sibling_config(str(configs / "long_context.py"), "textcraft.py", "tiny")
  assert textcraft.workdir == "workdir/textcraft_tiny" and textcraft.preset == "tiny"
  with pytest.raises(FileNotFoundError, match="no_such.py"):
    config_utils.sibling_config(str(tmp_path / "a.py"), "no_such.py", "tiny")
