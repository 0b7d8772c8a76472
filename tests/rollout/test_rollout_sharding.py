"""The engine on 8 simulated devices grows the same greedy trees as on one device."""
import json
import os
import pathlib
import subprocess
import sys

import pytest


@pytest.mark.multidevice
def test_sharded_engine_matches_single_device(tmp_path, toy_tokenizer, small_tasks):
  tasks_path = tmp_path / "tasks.json"
  tasks_path.write_text(json.dumps([t.to_dict() for t in small_tasks["easy"][:2]]))
  out_path = tmp_path / "out.json"
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  script = pathlib.Path(__file__).with_name("sharded_rollout_main.py")
  subprocess.run([sys.executable, str(script), toy_tokenizer.model_file, str(tasks_path), str(out_path)],
                 env=env, check=True, timeout=600)
  results = json.loads(out_path.read_text())
  single, sharded = results["single"], results["sharded"]
  assert sharded["param_devices"] == 8 and single["param_devices"] == 1
  assert len(single["parent"]) == 2 * 2 * 3  # 2 tasks x 2 samples, each a root with two children
  assert sharded["parent"] == single["parent"]
  assert sharded["sequences"] == single["sequences"]
