"""scripts/tpu/launch.py: the exact commands of --dry-run, the argument checks, the remote scripts, and
real runs against a fake gcloud (the order of the calls, resume's decisions, stopping at a failure)."""
import importlib.util
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import tarfile
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "tpu" / "launch.py"
NAME, ZONE = "rao-qwen", "us-east5-a"
TARGET = ["--name", NAME, "--zone", ZONE]
UP_V5P = ["up", *TARGET, "--accelerator", "v5p-8", "--bucket", "gs://my-rao-bucket", "--preset", "qwen3_4b"]
QWEN_DIR = "/opt/rao/models/Qwen3-4B-Instruct-2507"


def _launch(args, tmp_path, path_dirs, extra_env=None):
  env = {**os.environ, "PATH": os.pathsep.join(str(d) for d in path_dirs), "TMPDIR": str(tmp_path),
         **(extra_env or {})}
  return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                        timeout=60, check=False)


def _with_dry_run(args):
  """`args` with --dry-run added before the training overrides (after '--'), if any."""
  split = args.index("--") if "--" in args else len(args)
  return [*args[:split], "--dry-run", *args[split:]]


@pytest.fixture
def empty_path(tmp_path):
  """A PATH with nothing on it: no gcloud, no git."""
  directory = tmp_path / "empty-bin"
  directory.mkdir()
  return [directory]


@pytest.fixture
def dry(tmp_path, empty_path):
  """Runs the CLI with --dry-run (before any '--') and no tools on PATH; returns stdout's lines."""
  def run(*args):
    result = _launch(_with_dry_run(list(args)), tmp_path, empty_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.splitlines()
  return run


def _commands(lines):
  return [line for line in lines if not line.startswith("#")]


def _ssh_scripts(lines):
  """{worker: [script, ...]} of the printed `tpu-vm ssh` commands, in order."""
  scripts = {}
  for line in _commands(lines):
    words = shlex.split(line)
    if words[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"]:
      worker = next(w.split("=", 1)[1] for w in words if w.startswith("--worker="))
      scripts.setdefault(worker, []).append(next(w.split("=", 1)[1] for w in words if w.startswith("--command=")))
  return scripts


def _train_argv(script):
  """The trainer's command line inside the launch script."""
  words = shlex.split(script)
  start = words.index("experiments/train.py") - 1
  return words[start:words.index(">", start)]


# ---------------------------------------------------------------------------------------------------
# --dry-run: the exact commands


def test_create_v5p_vm(dry):
  assert _commands(dry("create", *TARGET, "--accelerator", "v5p-8")) == [
      "gcloud compute tpus tpu-vm create rao-qwen --zone=us-east5-a --accelerator-type=v5p-8 "
      "--version=v2-alpha-tpuv5",
      "gcloud compute tpus tpu-vm describe rao-qwen --zone=us-east5-a '--format=value(state)'",
  ]


def test_create_v6e_spot_vm_in_a_project(dry):
  assert _commands(dry("create", "--name", "rao-v6", "--zone", "us-east5-b", "--accelerator", "v6e-8",
                       "--spot", "--project", "my-proj")) == [
      "gcloud compute tpus tpu-vm create rao-v6 --zone=us-east5-b --accelerator-type=v6e-8 "
      "--version=v2-alpha-tpuv6e --spot --project=my-proj",
      "gcloud compute tpus tpu-vm describe rao-v6 --zone=us-east5-b '--format=value(state)' --project=my-proj",
  ]


def test_create_v5p_queued_resource(dry):
  assert _commands(dry("create", *TARGET, "--accelerator", "v5p-8", "--queued")) == [
      "gcloud compute tpus queued-resources create rao-qwen-qr --zone=us-east5-a --node-id=rao-qwen "
      "--accelerator-type=v5p-8 --runtime-version=v2-alpha-tpuv5",
      "gcloud compute tpus queued-resources describe rao-qwen-qr --zone=us-east5-a '--format=value(state.state)'",
  ]


def test_create_v6e_spot_queued_resource_with_a_deadline(dry):
  lines = dry("create", "--name", "rao-v6", "--zone", "us-east5-b", "--accelerator", "v6e-8", "--queued",
              "--qr-name", "my-qr", "--spot", "--valid-until-duration", "6h", "--poll-seconds", "10")
  assert lines == [
      "gcloud compute tpus queued-resources create my-qr --zone=us-east5-b --node-id=rao-v6 "
      "--accelerator-type=v6e-8 --runtime-version=v2-alpha-tpuv6e --spot --valid-until-duration=6h",
      "# repeated every 10 s, for up to 120 min, until it prints ACTIVE:",
      "gcloud compute tpus queued-resources describe my-qr --zone=us-east5-b '--format=value(state.state)'",
  ]


def test_runtime_version_override(dry):
  assert "--version=v2-alpha-tpuv5-lite-custom" in dry("create", *TARGET, "--accelerator", "v5p-8",
                                                       "--runtime-version", "v2-alpha-tpuv5-lite-custom")[0]


def test_delete(dry):
  assert dry("delete", *TARGET) == ["gcloud compute tpus tpu-vm delete rao-qwen --zone=us-east5-a --quiet"]
  assert dry("delete", *TARGET, "--queued") == [
      "gcloud compute tpus queued-resources delete rao-qwen-qr --zone=us-east5-a --force --quiet"]


def test_up_v5p_runs_create_sync_setup_launch_in_order(dry, tmp_path):
  lines = _commands(dry(*UP_V5P))
  assert lines[:4] == [
      "gcloud compute tpus tpu-vm create rao-qwen --zone=us-east5-a --accelerator-type=v5p-8 "
      "--version=v2-alpha-tpuv5",
      "gcloud compute tpus tpu-vm describe rao-qwen --zone=us-east5-a '--format=value(state)'",
      f"git -C {ROOT} archive --format=tar.gz --output={tmp_path}/rao_jax-src-rao-qwen.tar.gz HEAD",
      f"gcloud compute tpus tpu-vm scp {tmp_path}/rao_jax-src-rao-qwen.tar.gz rao-qwen:/tmp/rao_jax-src.tar.gz "
      "--zone=us-east5-a --worker=all",
  ]  # then sync, setup and launch on every worker:
  assert [shlex.split(line)[:8] for line in lines[4:]] == [
      ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "rao-qwen", "--zone=us-east5-a", "--worker=all"]] * 3
  assert len(lines) == 7
  sync, setup, launch = _ssh_scripts(lines)["all"]
  assert "tar -xzf /tmp/rao_jax-src.tar.gz -C /opt/rao/code.new" in sync
  assert "gcsfuse --implicit-dirs --rename-dir-limit=200000 --metadata-cache-ttl-secs=0 my-rao-bucket /mnt/rao" in setup
  assert '-e /opt/rao/code "jax[tpu]"' in setup
  assert "experiments/train.py" in launch


def test_up_v6e_queued_spot(dry):
  lines = _commands(dry("up", "--name", "rao-v6", "--zone", "us-east5-b", "--accelerator", "v6e-8", "--queued",
                        "--spot", "--bucket", "my-rao-bucket", "--project", "my-proj", "--preset", "qwen3_4b_v6e"))
  assert lines[:2] == [
      "gcloud compute tpus queued-resources create rao-v6-qr --zone=us-east5-b --node-id=rao-v6 "
      "--accelerator-type=v6e-8 --runtime-version=v2-alpha-tpuv6e --spot --project=my-proj",
      "gcloud compute tpus queued-resources describe rao-v6-qr --zone=us-east5-b '--format=value(state.state)' "
      "--project=my-proj",
  ]
  # The TPU VM of a queued resource is reached by its node id.
  on_the_node = [shlex.split(line) for line in lines[2:] if line.startswith("gcloud")]
  assert [words[3:5] for words in on_the_node] == [["tpu-vm", "scp"]] + [["tpu-vm", "ssh"]] * 3
  assert all("rao-v6" in words or "rao-v6:/tmp/rao_jax-src.tar.gz" in words for words in on_the_node)
  assert all(line.endswith("--project=my-proj") for line in lines if line.startswith("gcloud"))


@pytest.mark.parametrize("preset, checkpoint", [("qwen3_4b", QWEN_DIR), ("tiny", None)])
def test_preset_lands_in_the_train_command(dry, preset, checkpoint):
  scripts = _ssh_scripts(dry("up", *TARGET, "--accelerator", "v5p-8", "--bucket", "b-1", "--preset", preset))["all"]
  expected = ["/opt/rao/venv/bin/python", "experiments/train.py", "--config", f"configs/textcraft.py:{preset}",
              "--config.workdir=/mnt/rao/runs/rao-qwen"]
  expected += [f"--config.warm_start.checkpoint={checkpoint}"] * bool(checkpoint) + ["--multihost"]
  assert _train_argv(scripts[2]) == expected
  download = f"/opt/rao/venv/bin/hf download Qwen/Qwen3-4B-Instruct-2507 --local-dir {QWEN_DIR}"
  assert (download in scripts[1]) == bool(checkpoint)  # setup fetches exactly what the run starts from


@pytest.mark.parametrize("accelerator, preset, advice", [
    ("v6e-8", "qwen3_4b", "use --preset qwen3_4b_v6e"), ("v5p-16", "qwen3_4b_v6e", "use --preset qwen3_4b"),
    ("v4-8", "qwen3_4b", "check them with scripts/compile_tpu.py first")])
def test_a_preset_sized_for_other_chips_is_warned_about(tmp_path, empty_path, accelerator, preset, advice):
  """The qwen3_4b presets' meshes and sizes were compiled for one generation each; on another the run
  would likely not fit, which the user hears before anything is created."""
  result = _launch(["up", *TARGET, "--accelerator", accelerator, "--bucket", "b-1", "--preset", preset,
                    "--dry-run"], tmp_path, empty_path)
  assert result.returncode == 0, result.stderr
  assert result.stderr.startswith(f"warning: the {preset} preset's mesh and sizes fit ")
  assert f"not {accelerator}; {advice}" in result.stderr
  assert f"configs/textcraft.py:{preset}" in result.stdout


def test_overrides_reach_the_train_command(dry):
  overrides = ["--config.rl.num_steps=3", "--config.eval.difficulties=('easy', 'medium')", "--config.seed=$HOME"]
  lines = dry("launch", *TARGET, "--run", "exp1", "--", *overrides)
  (script,) = _ssh_scripts(lines)["all"]
  argv = _train_argv(script)
  assert argv[4:] == ["--config.workdir=/mnt/rao/runs/exp1", f"--config.warm_start.checkpoint={QWEN_DIR}",
                      "--multihost", *overrides]


def test_own_checkpoint_and_config(dry):
  lines = dry("up", *TARGET, "--accelerator", "v5p-8", "--bucket", "b-1", "--config-file", "configs/diagnostic.py",
              "--preset", "choice", "--checkpoint", "/mnt/rao/models/mine", "--run", "diag")
  _, setup, launch = _ssh_scripts(lines)["all"]
  assert _train_argv(launch)[3:] == ["configs/diagnostic.py:choice", "--config.workdir=/mnt/rao/runs/diag",
                                     "--config.warm_start.checkpoint=/mnt/rao/models/mine", "--multihost"]
  assert "hf download" not in setup


def test_logs_and_tensorboard(dry):
  assert dry("logs", *TARGET, "--worker", "3", "--run", "exp1", "--lines", "50") == [
      "gcloud compute tpus tpu-vm ssh rao-qwen --zone=us-east5-a --worker=3 "
      "'--command=tail -n 50 -F /opt/rao/logs/exp1/worker-*.log'"]
  assert _commands(dry("tensorboard", *TARGET, "--port", "6007")) == [
      "gcloud compute tpus tpu-vm ssh rao-qwen --zone=us-east5-a --worker=0 '--ssh-flag=-L 6007:localhost:6007' "
      "'--command=/opt/rao/venv/bin/tensorboard --logdir /mnt/rao/runs/rao-qwen/tensorboard --port 6007'"]


def test_resume_dry_run_shows_the_preempted_path(dry):
  resume = _commands(dry("resume", *UP_V5P[1:]))
  up = _commands(dry(*UP_V5P))
  assert resume == [
      "gcloud compute tpus tpu-vm describe rao-qwen --zone=us-east5-a '--format=value(state)'",
      "gcloud compute tpus tpu-vm delete rao-qwen --zone=us-east5-a --quiet",
      *up]  # then exactly what up does: the trainer finds its checkpoints in the bucket


def test_remote_scripts_are_valid_bash(dry):
  lines = dry(*UP_V5P) + dry("logs", *TARGET) + dry("tensorboard", *TARGET) + dry("stop", *TARGET)
  scripts = [s for worker in _ssh_scripts(lines).values() for s in worker]
  assert len(scripts) == 6
  for script in scripts:
    result = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, (script, result.stderr)


# ---------------------------------------------------------------------------------------------------
# Bad arguments: a usage message, no traceback


@pytest.mark.parametrize("args, message", [
    (["create", *TARGET, "--accelerator", "v9-8"], "unknown accelerator generation 'v9'"),
    (["create", *TARGET, "--accelerator", "v5p"], "expected <generation>-<size>"),
    (["up", *TARGET, "--accelerator", "v5p-8"], "the following arguments are required: --bucket"),
    (["create", "--name", "Rao_Qwen", "--zone", ZONE, "--accelerator", "v5p-8"], "gcloud takes a lowercase letter"),
    (["create", "--name", "rao-", "--zone", ZONE, "--accelerator", "v5p-8"], "not ending in a hyphen"),
    (["create", "--name", "r" * 64, "--zone", ZONE, "--accelerator", "v5p-8"], "at most 63 characters"),
    (["create", "--name", "r" * 62, "--zone", ZONE, "--accelerator", "v5p-8", "--queued"], "give --qr-name"),
    (["delete", "--name", NAME, "--zone", "east"], "expected a zone"),
    (["up", *TARGET, "--accelerator", "v5p-8", "--bucket", "gs://b-1/sub"], "give the bucket only"),
    (["up", *TARGET, "--accelerator", "v5p-8", "--bucket", "gs://My_Bucket"], "is not a bucket name"),
    (["up", *TARGET, "--accelerator", "v5p-8", "--bucket", "b-1", "--preset", "qwen3_8b"],
     "is not one of configs/textcraft.py's presets: tiny, tiny_linear, qwen3_4b"),
    (["launch", *TARGET, "--hf-model", ""], "the qwen3_4b preset starts from a Hugging Face checkpoint"),
    (["launch", *TARGET, "--checkpoint", "models/q"], "expected an absolute path"),
    (["launch", *TARGET, "--", "--steps=3"], "take the form --config.KEY=VALUE"),
    (["launch", *TARGET, "--", "--config.workdir=/tmp/x"], "choose it with --run"),
    (["launch", *TARGET, "--", "--config.warm_start.checkpoint=/x"], "--checkpoint or --hf-model"),
    (["delete", *TARGET, "--", "--config.seed=1"], "delete takes no training overrides"),
    (["stop", *TARGET, "--run", "../x"], "a directory name"),
    (["create", *TARGET, "--accelerator", "v5p-8", "--valid-until-duration", "6h"], "add --queued"),
    (["create", *TARGET, "--accelerator", "v5p-8", "--spot", "--reserved"], "not allowed with argument"),
    (["create", *TARGET, "--accelerator", "v5p-8", "--queued", "--valid-until-duration", "soon"],
     "expected a gcloud duration"),
])
def test_bad_arguments_are_refused_with_a_reason(tmp_path, empty_path, args, message):
  result = _launch(_with_dry_run(args), tmp_path, empty_path)
  assert result.returncode == 2, result.stdout
  assert message in result.stderr
  assert "Traceback" not in result.stderr
  assert result.stdout == ""


def test_without_gcloud_it_says_what_is_missing(tmp_path, empty_path):
  result = _launch(["delete", *TARGET], tmp_path, empty_path)
  assert result.returncode == 1
  assert result.stderr.splitlines()[-1].startswith("error: gcloud is not on PATH: install the Google Cloud CLI")
  assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------------
# Real runs against a fake gcloud

FAKE_GCLOUD = """\
#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_GCLOUD_LOG"], "a") as log:
  log.write(json.dumps(args) + "\\n")
group, verb = args[2], args[3]
if verb == os.environ.get("FAKE_GCLOUD_FAIL"):
  sys.exit(3)
state_file = os.environ["FAKE_TPU_STATE"]
state = open(state_file).read().strip()
if verb == "describe":
  if state == "NOT_FOUND":
    sys.exit("ERROR: (gcloud.compute.tpus.%s.describe) NOT_FOUND: the resource was not found" % group)
  print(state)
  if state == "WAITING_FOR_RESOURCES":  # the next look finds it provisioned
    open(state_file, "w").write("ACTIVE")
elif verb == "delete":
  open(state_file, "w").write("NOT_FOUND")
elif verb == "create":
  open(state_file, "w").write("WAITING_FOR_RESOURCES" if group == "queued-resources" else "READY")
"""


@pytest.fixture
def fake_gcloud(tmp_path):
  """Runs the CLI for real with a fake gcloud (and the real git) on PATH; returns (result, gcloud calls)."""
  bin_dir = tmp_path / "fake-bin"
  bin_dir.mkdir()
  gcloud = bin_dir / "gcloud"
  gcloud.write_text(FAKE_GCLOUD.format(python=sys.executable))
  gcloud.chmod(0o755)
  log, state = tmp_path / "gcloud.log", tmp_path / "state"

  def run(args, initial_state="NOT_FOUND", fail=None):
    state.write_text(initial_state)
    log.write_text("")
    env = {"FAKE_GCLOUD_LOG": str(log), "FAKE_TPU_STATE": str(state), "FAKE_GCLOUD_FAIL": fail or ""}
    result = _launch([*args, "--poll-seconds", "0"], tmp_path, [bin_dir, pathlib.Path(shutil.which("git")).parent],
                     env)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return result, calls
  return run


def _verbs(calls):
  return [f"{call[2]} {call[3]}" for call in calls]


def test_up_runs_what_the_dry_run_prints(fake_gcloud, dry):
  result, calls = fake_gcloud(UP_V5P)
  assert result.returncode == 0, result.stderr
  assert [shlex.join(["gcloud", *call]) for call in calls] == [
      line for line in _commands(dry(*UP_V5P)) if line.startswith("gcloud")]
  tarball = calls[2][4]  # scp's local file: the repository at HEAD
  with tarfile.open(tarball) as archive:
    names = archive.getnames()
  assert "setup.py" in names and "experiments/train.py" in names
  assert not any(name.startswith((".git/", ".venv/", "workdir/")) for name in names)


def test_resume_after_a_preemption_recreates_the_vm(fake_gcloud):
  result, calls = fake_gcloud(["resume", *UP_V5P[1:]], initial_state="PREEMPTED")
  assert result.returncode == 0, result.stderr
  assert _verbs(calls) == ["tpu-vm describe", "tpu-vm delete", "tpu-vm create", "tpu-vm describe", "tpu-vm scp",
                           "tpu-vm ssh", "tpu-vm ssh", "tpu-vm ssh"]
  assert "is PREEMPTED: deleting and recreating it" in result.stderr


def test_resume_of_a_suspended_queued_resource_waits_for_it(fake_gcloud):
  args = ["resume", *UP_V5P[1:], "--queued", "--spot"]
  result, calls = fake_gcloud(args, initial_state="SUSPENDED")
  assert result.returncode == 0, result.stderr
  assert _verbs(calls) == ["queued-resources describe", "queued-resources delete", "queued-resources create",
                           "queued-resources describe", "queued-resources describe", "tpu-vm scp",
                           "tpu-vm ssh", "tpu-vm ssh", "tpu-vm ssh"]
  assert calls[1][-2:] == ["--force", "--quiet"]
  assert "is WAITING_FOR_RESOURCES; next look in 0 s" in result.stderr


def test_resume_on_a_ready_vm_only_relaunches(fake_gcloud):
  result, calls = fake_gcloud(["resume", *UP_V5P[1:]], initial_state="READY")
  assert result.returncode == 0, result.stderr
  assert _verbs(calls) == ["tpu-vm describe", "tpu-vm ssh"]
  assert "experiments/train.py" in calls[1][-1]


def test_resume_of_a_vanished_vm_creates_it_without_deleting(fake_gcloud):
  result, calls = fake_gcloud(["resume", *UP_V5P[1:]], initial_state="NOT_FOUND")
  assert result.returncode == 0, result.stderr
  assert _verbs(calls)[:3] == ["tpu-vm describe", "tpu-vm create", "tpu-vm describe"]


def test_resume_refuses_a_slice_in_transition(fake_gcloud):
  result, calls = fake_gcloud(["resume", *UP_V5P[1:]], initial_state="CREATING")
  assert result.returncode == 1
  assert "is CREATING, neither READY nor lost" in result.stderr and "Traceback" not in result.stderr
  assert _verbs(calls) == ["tpu-vm describe"]


def test_a_failing_command_stops_the_rest(fake_gcloud):
  result, calls = fake_gcloud(UP_V5P, fail="scp")
  assert result.returncode == 1
  assert "this command failed (exit status 3), so nothing after it ran:" in result.stderr
  assert "gcloud compute tpus tpu-vm scp" in result.stderr.splitlines()[-1]
  assert _verbs(calls) == ["tpu-vm create", "tpu-vm describe", "tpu-vm scp"]


def test_create_of_a_vm_that_gets_preempted_while_waiting_fails(fake_gcloud, tmp_path):
  bin_dir = tmp_path / "fake-bin"
  (bin_dir / "gcloud").write_text(FAKE_GCLOUD.format(python=sys.executable).replace(
      '"WAITING_FOR_RESOURCES" if group == "queued-resources" else "READY"', '"PREEMPTED"'))
  result, _ = fake_gcloud(["create", *TARGET, "--accelerator", "v5p-8"])
  assert result.returncode == 1
  assert result.stderr.splitlines()[-1] == "error: the TPU VM rao-qwen is PREEMPTED instead of becoming READY"


# ---------------------------------------------------------------------------------------------------
# The launch script, run here with its remote paths pointed at a temporary directory


def _load_launch_module(monkeypatch):
  spec = importlib.util.spec_from_file_location("tpu_launch", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
  spec.loader.exec_module(module)
  return module


def test_launch_script_starts_in_the_background_once_and_stop_ends_it(tmp_path, monkeypatch):
  launch = _load_launch_module(monkeypatch)
  code, venv = tmp_path / "code", tmp_path / "venv"
  (venv / "bin").mkdir(parents=True)
  code.mkdir()
  fake_python = venv / "bin" / "python"  # stands in for the trainer: prints its arguments, then waits
  fake_python.write_text("#!/bin/sh\necho \"trainer $*\"\nexec sleep 30\n")
  fake_python.chmod(0o755)
  monkeypatch.setattr(launch, "REMOTE_CODE", str(code))
  monkeypatch.setattr(launch, "REMOTE_VENV", str(venv))
  monkeypatch.setattr(launch, "REMOTE_LOGS", str(tmp_path / "logs"))
  monkeypatch.setattr(launch, "WORKER_ID", "echo 7")
  script = launch.launch_script(launch.Run("exp1", "tiny", overrides=("--config.rl.num_steps=3",)))

  def run_script(text=script):
    return subprocess.run(["bash", "-c", text], capture_output=True, text=True, timeout=20, check=False)

  first = run_script()
  pid = int((tmp_path / "logs" / "exp1" / "worker-7.pid").read_text())
  try:
    assert first.returncode == 0, first.stderr
    assert f"worker 7: started pid {pid}" in first.stdout
    log = tmp_path / "logs" / "exp1" / "worker-7.log"
    deadline = time.monotonic() + 10
    while not log.read_text() and time.monotonic() < deadline:
      time.sleep(0.05)
    assert log.read_text() == ("trainer experiments/train.py --config configs/textcraft.py:tiny "
                               "--config.workdir=/mnt/rao/runs/exp1 --multihost --config.rl.num_steps=3\n")
    second = run_script()  # the same run is still alive on this worker: refused
    assert second.returncode == 1
    assert f"worker 7: run exp1 is already running (pid {pid})" in second.stderr
    stop = run_script(launch.stop_script("exp1"))
    assert stop.returncode == 0, stop.stderr
    assert f"stopped pid {pid}" in stop.stdout
    assert not (tmp_path / "logs" / "exp1" / "worker-7.pid").exists()
    third = run_script()  # stopped: it starts again
    assert third.returncode == 0, third.stderr
    pid = int((tmp_path / "logs" / "exp1" / "worker-7.pid").read_text())
  finally:
    try:
      os.kill(pid, 9)
    except ProcessLookupError:
      pass
