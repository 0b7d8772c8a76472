"""configs/generate.py through absl flag parsing, presets, overrides and validation."""
import pytest
from absl import flags
from ml_collections import config_flags

from rao_jax import config_utils
from rao_jax.model import config as model_config

# ml_collections loads config files with importlib's deprecated load_module().
pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")

CONFIG_FILE = "configs/generate.py"


def parse(*args: str):
  argv = ["prog", *args]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, flag_values=flag_values, sys_argv=argv,
                                  lock_config=True)
  flag_values(argv)
  return flag_values.config


@pytest.mark.parametrize("preset", sorted(model_config.PRESETS))
def test_every_preset_builds_its_model_config(preset):
  cfg = parse(f"--config={CONFIG_FILE}:{preset}")
  assert cfg.preset == preset
  assert config_utils.validate_generate_config(cfg) == model_config.get_preset(preset)


def test_default_preset_is_tiny():
  assert parse(f"--config={CONFIG_FILE}").preset == "tiny"


def test_overrides_reach_the_model_config():
  cfg = parse(f"--config={CONFIG_FILE}:tiny", "--config.model.num_layers=2", "--config.temperature=0",
              "--config.max_new_tokens=7")
  model = config_utils.validate_generate_config(cfg)
  assert model.num_layers == 2 and model.hidden_size == model_config.get_preset("tiny").hidden_size
  assert (cfg.temperature, cfg.max_new_tokens) == (0.0, 7)


def test_unknown_preset_lists_known_ones():
  with pytest.raises(flags.IllegalFlagValueError, match=r"unknown preset 'huge'.*qwen3_4b"):
    parse(f"--config={CONFIG_FILE}:huge")


def test_badly_typed_override_fails_at_parse_time():
  with pytest.raises(flags.IllegalFlagValueError, match="num_layers"):
    parse(f"--config={CONFIG_FILE}", "--config.model.num_layers=two")


@pytest.mark.parametrize("override, message", [
    ("--config.model.num_layers=-1", r"config\.model\.num_layers=-1 must be a positive integer"),
    ("--config.model.hidden_size=0", r"config\.model\.hidden_size=0"),
    ("--config.model.num_kv_heads=3", r"--config\.model\.num_heads=4 is not divisible by "
                                      r"num_kv_heads=3"),
    ("--config.model.dtype=float8", r"config\.model\.dtype='float8'"),
    ("--config.max_new_tokens=0", r"config\.max_new_tokens=0 must be a positive integer"),
    ("--config.temperature=-0.5", r"config\.temperature=-0\.5 must be >= 0"),
    ("--config.seed=-3", r"config\.seed=-3"),
    ("--config.cache_dir=", r"config\.cache_dir=''"),
])
def test_invalid_values_name_the_field(override, message):
  cfg = parse(f"--config={CONFIG_FILE}:tiny", override)
  with pytest.raises(ValueError, match=message):
    config_utils.validate_generate_config(cfg)


def test_parse_preset():
  assert config_utils.parse_preset(None, ["a", "b"], default="b") == "b"
  assert config_utils.parse_preset("", ["a", "b"], default="b") == "b"
  assert config_utils.parse_preset("a", ["a", "b"], default="b") == "a"
  with pytest.raises(ValueError, match=r"unknown preset 'c'; known presets are \['a', 'b'\]"):
    config_utils.parse_preset("c", ["b", "a"], default="a")


def test_model_config_from_mapping_rejects_unknown_fields():
  fields = model_config.get_preset("tiny").to_dict()
  assert config_utils.model_config_from(fields) == model_config.get_preset("tiny")
  with pytest.raises(ValueError, match=r"--config\.model\.num_experts is not a setting of ModelConfig"):
    config_utils.model_config_from({**fields, "num_experts": 4})


def test_missing_section_is_named():
  cfg = parse(f"--config={CONFIG_FILE}:tiny")
  with cfg.unlocked():
    del cfg["chat"]
  with pytest.raises(ValueError, match=r"config\.chat is missing"):
    config_utils.validate_generate_config(cfg)
