"""scripts/bench_host_memory.py and the shape parser it shares with scripts/bench_train.py: bad shapes are
refused before any child starts, and a toy-sized run prints one row per malloc policy."""
import pathlib
import subprocess
import sys

import pytest

_SCRIPTS = pathlib.Path(__file__).parents[2] / "scripts"


@pytest.fixture(scope="module")
def bench_train(load_script):
  return load_script("bench_train")


def test_parse_shape_reads_preset_rows_and_length(bench_train):
  case = bench_train.parse_shape("small:4x512")
  assert (case.preset, case.rows, case.row_length) == ("small", 4, 512)


@pytest.mark.parametrize("shape", ["tiny", "tiny:8", "tiny:x512", "tiny:8x", "tiny:0x512", "tiny:8x-1",
                                   "tiny:8x5.5", "tiny:8by512"])
def test_parse_shape_refuses_malformed_shapes(bench_train, shape):
  with pytest.raises(ValueError, match="expected PRESET:ROWSxT"):
    bench_train.parse_shape(shape)


def test_parse_shape_refuses_unknown_presets(bench_train):
  with pytest.raises(ValueError, match="unknown model preset"):
    bench_train.parse_shape("huge:8x512")


def _bench(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, str(_SCRIPTS / "bench_host_memory.py"), *args], capture_output=True,
                        text=True, timeout=600, check=False)


def test_bad_shape_fails_before_any_child_runs():
  out = _bench("--shapes", "tiny:8x512", "tiny:8by512")
  assert out.returncode != 0 and "expected PRESET:ROWSxT" in out.stderr
  assert "| shape |" not in out.stdout


def test_toy_run_prints_a_row_per_policy():
  out = _bench("--shapes", "tiny:1x16", "--steps", "1")
  assert out.returncode == 0, out.stderr[-2000:]
  rows = [line for line in out.stdout.splitlines() if line.startswith("| tiny:1x16 |")]
  assert [row.split("|")[2].strip() for row in rows] == ["system", "retain"]
  assert rows[0].split("|")[-3].strip() == "1.00"  # the baseline's step time against itself
