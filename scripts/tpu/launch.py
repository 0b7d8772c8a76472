#!/usr/bin/env python3
"""Trains on a Cloud TPU slice: create it, set it up, sync the code, launch, watch, resume, delete.

  python scripts/tpu/launch.py up --name rao-qwen --zone us-east5-a --accelerator v5p-8 \\
      --bucket gs://my-rao-bucket --preset qwen3_4b
  python scripts/tpu/launch.py logs --name rao-qwen --zone us-east5-a
  python scripts/tpu/launch.py tensorboard --name rao-qwen --zone us-east5-a
  python scripts/tpu/launch.py resume <the flags given to up>     # after a preemption
  python scripts/tpu/launch.py delete --name rao-qwen --zone us-east5-a

Subcommands: create, sync, setup, launch, logs, tensorboard, stop, resume, delete, and up (create +
sync + setup + launch). Each takes --dry-run, which prints the exact commands, one per line and shell-quoted
(lines starting with # say what a real run would wait for or decide), and runs nothing: it needs
neither gcloud nor a project. Without it the commands run one after another and the first that fails
stops the script, naming the command. Extra training flags (`--config.KEY=VALUE`) go after `--`.
The guide is docs/tpu.md. Standard library only, so it runs from any Python 3.9+ with gcloud.

What every worker (host) of the slice holds:
  /opt/rao/code    the repository: a `git archive` of --ref (default HEAD) made here   (sync)
  /opt/rao/venv    Python --python-version, the project (editable), jax[tpu], TensorBoard  (setup)
  /opt/rao/models  the Hugging Face checkpoint the run starts from (qwen3_4b: Qwen3-4B-Instruct-2507)
  /opt/rao/logs    <run>/worker-<i>.log and .pid: each worker's training output, on its own disk
  /mnt/rao         the GCS bucket through gcsfuse, the same files on every host; the run's work
                   directory (checkpoints, metrics.jsonl, tensorboard/) is /mnt/rao/runs/<run>, so a
                   recreated slice finds the checkpoints and rerunning the same command resumes.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import pathlib
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import TextIO

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
TRAIN_SCRIPT = "experiments/train.py"
DEFAULT_CONFIG_FILE = "configs/textcraft.py"
DEFAULT_PRESET = "qwen3_4b"

REMOTE_ROOT = "/opt/rao"
REMOTE_CODE = f"{REMOTE_ROOT}/code"
REMOTE_VENV = f"{REMOTE_ROOT}/venv"
REMOTE_MODELS = f"{REMOTE_ROOT}/models"
REMOTE_LOGS = f"{REMOTE_ROOT}/logs"
REMOTE_UV = f"{REMOTE_ROOT}/bin/uv"
REMOTE_PYTHONS = f"{REMOTE_ROOT}/python"
REMOTE_TARBALL = "/tmp/rao_jax-src.tar.gz"
MOUNT = "/mnt/rao"

# TPU software ("runtime") version per generation, the prefix of --accelerator (cloud.google.com/tpu/docs/runtimes).
RUNTIME_VERSIONS = {
    "v4": "tpu-ubuntu2204-base",
    "v5litepod": "v2-alpha-tpuv5-lite",  # v5e
    "v5p": "v2-alpha-tpuv5",
    "v6e": "v2-alpha-tpuv6e",
}
# The checkpoint a preset starts from when neither --hf-model nor --checkpoint is given.
HF_MODELS = {"qwen3_4b": "Qwen/Qwen3-4B-Instruct-2507", "qwen3_4b_v6e": "Qwen/Qwen3-4B-Instruct-2507"}
# The TPU generation a preset's mesh and sizes were checked for (docs/tpu_memory.md).
PRESET_GENERATIONS = {"qwen3_4b": "v5p", "qwen3_4b_v6e": "v6e"}

VM_READY, VM_LOST = "READY", ("PREEMPTED", "TERMINATED")
QR_READY, QR_LOST = "ACTIVE", ("SUSPENDED", "SUSPENDING", "FAILED")
NOT_FOUND = "NOT_FOUND"

# The worker's index in the slice, from the metadata server (what jax.distributed reads on a TPU VM).
WORKER_ID = ('curl -sf -H "Metadata-Flavor: Google" '
             "http://metadata.google.internal/computeMetadata/v1/instance/attributes/agent-worker-number "
             "|| hostname")
GCSFUSE_REPO = ("deb [signed-by=/usr/share/keyrings/cloud.google.asc] "
                "https://packages.cloud.google.com/apt gcsfuse-$(lsb_release -c -s) main")
# Directory renames (Orbax commits each checkpoint by renaming its temporary directory) need
# --rename-dir-limit on a flat bucket; no metadata cache, so that every host sees the others' writes.
GCSFUSE_FLAGS = "--implicit-dirs --rename-dir-limit=200000 --metadata-cache-ttl-secs=0"


class LaunchError(Exception):
  """A failure to report in one line (no traceback): a failed command, a missing tool, a bad state."""


# ----------------------------------------------------------------------------------------------------
# Argument values


def _checked(pattern: str, what: str) -> Callable[[str], str]:
  """An argparse `type` accepting values that fully match `pattern`; `what` says what else is wanted."""
  regex = re.compile(pattern)

  def check(value: str) -> str:
    if not regex.fullmatch(value):
      raise argparse.ArgumentTypeError(f"{value!r}: {what}")
    return value
  return check


_RESOURCE_NAME = r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?"
resource_name = _checked(_RESOURCE_NAME,
                         "gcloud takes a lowercase letter, then lowercase letters, digits or hyphens "
                         "(at most 63 characters, not ending in a hyphen)")
zone_name = _checked(r"[a-z]+-[a-z]+[0-9]+-[a-z]", "expected a zone such as us-east5-a")
accelerator_type = _checked(r"[a-z0-9]+-[0-9]+", "expected <generation>-<size>, e.g. v5p-8 or v6e-8")
run_name = _checked(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", "letters, digits, '.', '_' or '-' (a directory name)")
hf_repo = _checked(r"(|[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*)",
                   "expected a Hugging Face repository OWNER/NAME (or '' for none)")
duration = _checked(r"([0-9]+[smhd])+", "expected a gcloud duration such as 6h, 2d or 1h30m")
python_version = _checked(r"3\.[0-9]+", "expected a Python version such as 3.11")
git_ref = _checked(r"[A-Za-z0-9][A-Za-z0-9._/@^~-]*", "expected a git commit, branch or tag")


def bucket_name(value: str) -> str:
  """`gs://NAME` or `NAME` → NAME, checked against GCS's bucket-name rules."""
  name = value.removeprefix("gs://").rstrip("/")
  if "/" in name:
    raise argparse.ArgumentTypeError(f"{value!r}: give the bucket only (gs://NAME); runs go under "
                                     f"gs://NAME/runs/<run>")
  if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]", name):
    raise argparse.ArgumentTypeError(f"{value!r} is not a bucket name (lowercase letters, digits, '-', "
                                     f"'_' and '.', 3 to 222 characters)")
  return name


def remote_path(value: str) -> str:
  """An absolute path on the workers."""
  if not posixpath.isabs(value):
    raise argparse.ArgumentTypeError(f"{value!r}: expected an absolute path on the workers")
  return value


def port_number(value: str) -> int:
  if not value.isdigit() or not 1 <= int(value) <= 65535:
    raise argparse.ArgumentTypeError(f"{value!r}: expected a port number")
  return int(value)


def training_override(value: str) -> str:
  """One `--config.KEY=VALUE` flag for the trainer (ValueError otherwise); the work directory and the
  checkpoint have flags of their own."""
  match = re.fullmatch(r"--config\.([A-Za-z_][A-Za-z0-9_.]*)=(.*)", value, re.DOTALL)
  if not match:
    raise ValueError(f"{value!r} after '--': training overrides take the form --config.KEY=VALUE")
  key = match.group(1)
  if key == "workdir":
    raise ValueError(f"{value!r}: the work directory is {MOUNT}/runs/<run>; choose it with --run")
  if key == "warm_start.checkpoint":
    raise ValueError(f"{value!r}: choose the starting checkpoint with --checkpoint or --hf-model")
  return value


def config_presets(config_file: pathlib.Path) -> tuple[str, ...] | None:
  """The PRESETS tuple a config file declares (read, not imported), or None if there is none to read."""
  try:
    tree = ast.parse(config_file.read_text(encoding="utf-8"))
  except (OSError, SyntaxError):
    return None
  for node in tree.body:
    if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "PRESETS" for t in node.targets):
      try:
        return tuple(ast.literal_eval(node.value))
      except ValueError:
        return None
  return None


# ----------------------------------------------------------------------------------------------------
# Commands


@dataclasses.dataclass(frozen=True)
class Target:
  """The TPU VM (node) `name`, or with `queued` the queued resource `qr_name` that holds it."""
  name: str
  zone: str
  project: str | None = None
  queued: bool = False
  qr_name: str = ""

  @property
  def description(self) -> str:
    return f"queued resource {self.qr_name}" if self.queued else f"TPU VM {self.name}"


@dataclasses.dataclass(frozen=True)
class Slice:
  """What to create: accelerator type, software version and provisioning model."""
  accelerator: str
  runtime_version: str
  spot: bool = False
  reserved: bool = False
  valid_until_duration: str | None = None


@dataclasses.dataclass(frozen=True)
class Run:
  """One training run: the trainer's config, its starting checkpoint and where it writes."""
  run: str
  preset: str
  config_file: str = DEFAULT_CONFIG_FILE
  checkpoint: str = ""
  hf_model: str = ""
  overrides: tuple[str, ...] = ()

  @property
  def workdir(self) -> str:
    return f"{MOUNT}/runs/{self.run}"


def gcloud(target: Target, group: str, verb: str, positionals: Sequence[str], flags: Sequence[str] = ()) -> list[str]:
  """`gcloud compute tpus GROUP VERB POSITIONALS --zone=ZONE FLAGS [--project=PROJECT]`."""
  command = ["gcloud", "compute", "tpus", group, verb, *positionals, f"--zone={target.zone}", *flags]
  return command + ([f"--project={target.project}"] if target.project else [])


def create_command(target: Target, tpu: Slice) -> list[str]:
  """Creates the TPU VM (waits until it exists) or queues the queued resource (returns once accepted)."""
  flags = [f"--accelerator-type={tpu.accelerator}"]
  if target.queued:
    flags = [f"--node-id={target.name}", *flags, f"--runtime-version={tpu.runtime_version}"]
  else:
    flags.append(f"--version={tpu.runtime_version}")
  flags += ["--spot"] * tpu.spot + ["--reserved"] * tpu.reserved
  if tpu.valid_until_duration:
    flags.append(f"--valid-until-duration={tpu.valid_until_duration}")
  if target.queued:
    return gcloud(target, "queued-resources", "create", [target.qr_name], flags)
  return gcloud(target, "tpu-vm", "create", [target.name], flags)


def describe_command(target: Target) -> list[str]:
  """Prints the state alone: READY, PREEMPTED, ... (TPU VM) or ACTIVE, SUSPENDED, ... (queued resource)."""
  if target.queued:
    return gcloud(target, "queued-resources", "describe", [target.qr_name], ["--format=value(state.state)"])
  return gcloud(target, "tpu-vm", "describe", [target.name], ["--format=value(state)"])


def delete_command(target: Target) -> list[str]:
  """Deletes without asking; a queued resource with --force, which deletes its TPU VM first."""
  if target.queued:
    return gcloud(target, "queued-resources", "delete", [target.qr_name], ["--force", "--quiet"])
  return gcloud(target, "tpu-vm", "delete", [target.name], ["--quiet"])


def ssh_command(target: Target, worker: str, script: str, ssh_flags: Sequence[str] = ()) -> list[str]:
  """Runs the shell `script` on `worker` ("all": on every worker of the slice at once)."""
  return gcloud(target, "tpu-vm", "ssh", [target.name], [f"--worker={worker}", *ssh_flags, f"--command={script}"])


def scp_command(target: Target, local: str, remote: str) -> list[str]:
  """Copies the local file `local` to `remote` on every worker."""
  return gcloud(target, "tpu-vm", "scp", [local, f"{target.name}:{remote}"], ["--worker=all"])


def local_tarball(target: Target) -> str:
  return str(pathlib.Path(tempfile.gettempdir()) / f"rao_jax-src-{target.name}.tar.gz")


def archive_command(ref: str, tarball: str) -> list[str]:
  """The repository's files at `ref` as a tarball (tracked files only: no .git, .venv or workdir)."""
  return ["git", "-C", str(REPO_ROOT), "archive", "--format=tar.gz", f"--output={tarball}", ref]


def _script(*statements: str) -> str:
  """One line of bash that stops at the first failing statement."""
  return "; ".join(("set -euo pipefail", *statements))


def _own_directory(path: str) -> str:
  return f'sudo mkdir -p {path} && sudo chown "$(id -u):$(id -g)" {path}'


def sync_script() -> str:
  """Replaces REMOTE_CODE with the copied tarball's files."""
  staging = f"{REMOTE_CODE}.new"
  return _script(_own_directory(REMOTE_ROOT), f"rm -rf {staging}", f"mkdir -p {staging}",
                 f"tar -xzf {REMOTE_TARBALL} -C {staging}", f"rm -rf {REMOTE_CODE}",
                 f"mv {staging} {REMOTE_CODE}", f"rm -f {REMOTE_TARBALL}")


def setup_script(bucket: str, python: str, hf_model: str) -> str:
  """Mounts the bucket at MOUNT, installs Python, the synced code and jax[tpu], and downloads the model.

  Every step is skipped or harmless when already done, so setup can be rerun (after a change of
  setup.py's requirements, say)."""
  pip = f"{REMOTE_UV} pip install --python {REMOTE_VENV}/bin/python"
  statements = [
      _own_directory(REMOTE_ROOT),
      f'test -f {REMOTE_CODE}/setup.py || {{ echo "no code in {REMOTE_CODE}: run sync first" >&2; exit 1; }}',
      f'command -v gcsfuse >/dev/null || {{ echo "{GCSFUSE_REPO}" '
      f"| sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null "
      f"&& curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg "
      f"| sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null "
      f"&& sudo apt-get -o DPkg::Lock::Timeout=600 update -q "
      f"&& sudo apt-get -o DPkg::Lock::Timeout=600 install -y -q gcsfuse; }}",
      f"mountpoint -q {MOUNT} || {{ {_own_directory(MOUNT)} && gcsfuse {GCSFUSE_FLAGS} "
      f"{shlex.quote(bucket)} {MOUNT}; }}",
      f"test -x {REMOTE_UV} || {{ curl -LsSf https://astral.sh/uv/install.sh "
      f"| env UV_UNMANAGED_INSTALL={posixpath.dirname(REMOTE_UV)} sh; }}",
      f"export UV_PYTHON_INSTALL_DIR={REMOTE_PYTHONS}",
      f"test -x {REMOTE_VENV}/bin/python || {REMOTE_UV} venv --python {python} {REMOTE_VENV}",
      f'{pip} -e {REMOTE_CODE} "jax[tpu]" tensorboard "huggingface_hub>=0.34"',
  ]
  if hf_model:
    statements.append(f"{REMOTE_VENV}/bin/hf download {hf_model} --local-dir {model_directory(hf_model)}")
  return _script(*statements)


def model_directory(hf_model: str) -> str:
  """Where setup puts a Hugging Face checkpoint on every worker."""
  return f"{REMOTE_MODELS}/{hf_model.split('/')[-1]}"


def train_command(run: Run) -> list[str]:
  """The trainer's command line on every worker; --multihost joins the hosts of the slice."""
  command = [f"{REMOTE_VENV}/bin/python", TRAIN_SCRIPT, "--config", f"{run.config_file}:{run.preset}",
             f"--config.workdir={run.workdir}"]
  if run.checkpoint:
    command.append(f"--config.warm_start.checkpoint={run.checkpoint}")
  return [*command, "--multihost", *run.overrides]


def launch_script(run: Run) -> str:
  """Starts the trainer in the background (nohup) unless this run's process is alive on the worker."""
  logs = f"{REMOTE_LOGS}/{run.run}"
  log, pidfile = f"{logs}/worker-$worker.log", f"{logs}/worker-$worker.pid"
  return _script(
      f"worker=$({WORKER_ID})",
      f"mkdir -p {logs}",
      f'if [ -f {pidfile} ] && kill -0 "$(cat {pidfile})" 2>/dev/null; then echo "worker $worker: run '
      f'{run.run} is already running (pid $(cat {pidfile}))" >&2; exit 1; fi',
      f"cd {REMOTE_CODE}",
      f"{{ nohup {shlex.join(train_command(run))} > {log} 2>&1 < /dev/null & }}",
      f"echo $! > {pidfile}",
      f'echo "worker $worker: started pid $! (log: {log})"')


def stop_script(run: str) -> str:
  """Ends the run's trainer (SIGTERM) on the worker, if it is alive; the trainer resumes from its checkpoints."""
  return _script(
      f'for pidfile in {REMOTE_LOGS}/{run}/worker-*.pid; do [ -f "$pidfile" ] || continue; pid=$(cat "$pidfile"); '
      f'if kill -0 "$pid" 2>/dev/null; then kill "$pid" && echo "$(hostname): stopped pid $pid"; fi; '
      f'rm -f "$pidfile"; done')


def tail_script(run: str, lines: int) -> str:
  return f"tail -n {lines} -F {REMOTE_LOGS}/{run}/worker-*.log"


def tensorboard_script(run: str, port: int) -> str:
  return f"{REMOTE_VENV}/bin/tensorboard --logdir {MOUNT}/runs/{run}/tensorboard --port {port}"


# ----------------------------------------------------------------------------------------------------
# Running


class Runner:
  """Prints the commands (dry run) or runs them, stopping at the first failure."""

  def __init__(self, dry_run: bool, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
               sleep: Callable[[float], None] = time.sleep):
    self.dry_run = dry_run
    self._out, self._err, self._sleep = out, err, sleep

  def note(self, text: str) -> None:
    """A remark: a shell comment in a dry run's output, a progress line on stderr otherwise."""
    print(f"# {text}", file=self._out if self.dry_run else self._err, flush=True)

  def show(self, command: Sequence[str]) -> None:
    print(shlex.join(command), file=self._out if self.dry_run else self._err, flush=True)

  def run(self, command: Sequence[str]) -> None:
    """Runs `command` with this terminal (dry run: prints it); a non-zero exit raises LaunchError."""
    if self.dry_run:
      self.show(command)
      return
    self._echo(command)
    returncode = self._call(command, capture=False).returncode
    if returncode:
      raise LaunchError(f"this command failed (exit status {returncode}), so nothing after it ran:\n"
                        f"  {shlex.join(command)}")

  def query(self, command: Sequence[str]) -> subprocess.CompletedProcess | None:
    """Runs `command` for its output (dry run: prints it and returns None)."""
    if self.dry_run:
      self.show(command)
      return None
    self._echo(command)
    return self._call(command, capture=True)

  def sleep(self, seconds: float) -> None:
    self._sleep(seconds)

  def _echo(self, command: Sequence[str]) -> None:
    print(f"+ {shlex.join(command)}", file=self._err, flush=True)

  @staticmethod
  def _call(command: Sequence[str], capture: bool) -> subprocess.CompletedProcess:
    if shutil.which(command[0]) is None:
      raise LaunchError(_missing_tool_message(command[0]))
    try:
      return subprocess.run(list(command), check=False, capture_output=capture, text=True)
    except OSError as e:
      raise LaunchError(f"could not run {command[0]}: {e}") from e


def _missing_tool_message(tool: str) -> str:
  if tool == "gcloud":
    return ("gcloud is not on PATH: install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install) "
            "and run `gcloud auth login`, or add --dry-run to print the commands without running them")
  return f"{tool} is not on PATH"


def read_state(runner: Runner, target: Target) -> str:
  """The TPU VM's or queued resource's state; NOT_FOUND if it does not exist."""
  result = runner.query(describe_command(target))
  assert result is not None, "read_state is never called in a dry run"
  if result.returncode:
    if NOT_FOUND in result.stderr:  # gcloud: "ERROR: (gcloud....describe) NOT_FOUND: ..."
      return NOT_FOUND
    raise LaunchError(f"could not describe the {target.description}:\n{result.stderr.strip()}")
  return result.stdout.strip() or "UNKNOWN"


def wait_until_ready(runner: Runner, target: Target, wait_minutes: float, poll_seconds: float) -> None:
  """Polls the state until READY (TPU VM) or ACTIVE (queued resource); a lost one or the deadline raises."""
  ready, lost = (QR_READY, QR_LOST) if target.queued else (VM_READY, VM_LOST)
  if runner.dry_run:
    runner.note(f"repeated every {poll_seconds:g} s, for up to {wait_minutes:g} min, until it prints {ready}:")
    runner.show(describe_command(target))
    return
  deadline = time.monotonic() + 60 * wait_minutes
  while (state := read_state(runner, target)) != ready:
    if state in lost or state == NOT_FOUND:
      raise LaunchError(f"the {target.description} is {state} instead of becoming {ready}")
    if time.monotonic() > deadline:
      raise LaunchError(f"the {target.description} is still {state} after {wait_minutes:g} min; rerun this "
                        f"command once it is {ready} (or raise --wait-minutes)")
    runner.note(f"the {target.description} is {state}; next look in {poll_seconds:g} s")
    runner.sleep(poll_seconds)


# ----------------------------------------------------------------------------------------------------
# Subcommands


def do_create(runner: Runner, args: argparse.Namespace) -> None:
  runner.run(create_command(args.target, args.slice))
  wait_until_ready(runner, args.target, args.wait_minutes, args.poll_seconds)


def do_sync(runner: Runner, args: argparse.Namespace) -> None:
  target, tarball = args.target, local_tarball(args.target)
  if not runner.dry_run:
    _warn_if_uncommitted(runner, args.ref)
  runner.run(archive_command(args.ref, tarball))
  runner.run(scp_command(target, tarball, REMOTE_TARBALL))
  runner.run(ssh_command(target, "all", sync_script()))


def _warn_if_uncommitted(runner: Runner, ref: str) -> None:
  status = runner.query(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"])
  if status is not None and status.returncode == 0 and status.stdout.strip():
    runner.note(f"warning: uncommitted changes are not copied; the workers get the files of {ref}")


def do_setup(runner: Runner, args: argparse.Namespace) -> None:
  runner.run(ssh_command(args.target, "all", setup_script(args.bucket, args.python_version, args.run.hf_model)))


def do_launch(runner: Runner, args: argparse.Namespace) -> None:
  runner.run(ssh_command(args.target, "all", launch_script(args.run)))
  bucket = getattr(args, "bucket", None) or "<bucket>"
  runner.note(f"work directory {args.run.workdir} (gs://{bucket}/runs/{args.run.run}); "
              f"watch with: {_follow_up(args, 'logs')}")


def _follow_up(args: argparse.Namespace, subcommand: str) -> str:
  """The command line of `subcommand` for the same slice and run."""
  words = ["python", "scripts/tpu/launch.py", subcommand, "--name", args.target.name, "--zone", args.target.zone]
  if args.target.project:
    words += ["--project", args.target.project]
  return shlex.join([*words, "--run", args.run.run])


def do_logs(runner: Runner, args: argparse.Namespace) -> None:
  runner.run(ssh_command(args.target, str(args.worker), tail_script(args.run.run, args.lines)))


def do_tensorboard(runner: Runner, args: argparse.Namespace) -> None:
  runner.note(f"open http://localhost:{args.port} while this runs (Ctrl-C ends it)")
  tunnel = f"--ssh-flag=-L {args.port}:localhost:{args.port}"
  runner.run(ssh_command(args.target, "0", tensorboard_script(args.run.run, args.port), [tunnel]))


def do_stop(runner: Runner, args: argparse.Namespace) -> None:
  runner.run(ssh_command(args.target, "all", stop_script(args.run.run)))


def do_delete(runner: Runner, args: argparse.Namespace) -> None:
  runner.run(delete_command(args.target))


def do_up(runner: Runner, args: argparse.Namespace) -> None:
  do_create(runner, args)
  _prepare_and_launch(runner, args)


def _prepare_and_launch(runner: Runner, args: argparse.Namespace) -> None:
  do_sync(runner, args)
  do_setup(runner, args)
  do_launch(runner, args)


def do_resume(runner: Runner, args: argparse.Namespace) -> None:
  """Relaunches the run: on the same slice if it is READY/ACTIVE, on a recreated one if it was preempted.

  The trainer restores the newest checkpoint in the run's work directory that verifies."""
  target = args.target
  ready, lost = (QR_READY, QR_LOST) if target.queued else (VM_READY, VM_LOST)
  if runner.dry_run:
    runner.note(f"a real run reads the state first; shown: what follows {lost[0]} (or {', '.join(lost[1:])}); "
                f"{ready}: the launch alone; {NOT_FOUND}: all but the delete")
    runner.show(describe_command(target))
    state = lost[0]
  else:
    state = read_state(runner, target)
  if state == ready:
    runner.note(f"the {target.description} is {ready}: launching on it")
    do_launch(runner, args)
    return
  if state in lost:
    runner.note(f"the {target.description} is {state}: deleting and recreating it")
    runner.run(delete_command(target))
  elif state != NOT_FOUND:
    raise LaunchError(f"the {target.description} is {state}, neither {ready} nor lost ({', '.join(lost)}); "
                      f"rerun resume once it settles")
  do_up(runner, args)


# ----------------------------------------------------------------------------------------------------
# Command line


def _target_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(add_help=False)
  parser.add_argument("--name", required=True, type=resource_name, help="the TPU VM (node) name")
  parser.add_argument("--zone", required=True, type=zone_name, help="e.g. us-east5-a (v5p) or us-east5-b (v6e)")
  parser.add_argument("--project", help="Google Cloud project (default: gcloud's core/project)")
  parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
  return parser


def _resource_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(add_help=False)
  parser.add_argument("--queued", action="store_true", help="the slice is (to be) held by a queued resource")
  parser.add_argument("--qr-name", type=resource_name, help="the queued resource's name (default: NAME-qr)")
  return parser


def _slice_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(add_help=False)
  parser.add_argument("--accelerator", required=True, type=accelerator_type,
                      help=f"e.g. v5p-8 or v6e-8; generations with a default --runtime-version: "
                           f"{', '.join(RUNTIME_VERSIONS)}")
  parser.add_argument("--runtime-version", help="TPU software version (default: the generation's, see above)")
  model = parser.add_mutually_exclusive_group()
  model.add_argument("--spot", action="store_true", help="Spot capacity: cheaper, preemptible at any time")
  model.add_argument("--reserved", action="store_true", help="use the project's reservation")
  parser.add_argument("--valid-until-duration", type=duration,
                      help="queued resources: give up if not provisioned within this long (e.g. 6h)")
  parser.add_argument("--wait-minutes", type=float, default=120.0, help="how long to wait for READY/ACTIVE")
  parser.add_argument("--poll-seconds", type=float, default=30.0, help="time between two state checks")
  return parser


def _setup_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(add_help=False)
  parser.add_argument("--bucket", required=True, type=bucket_name,
                      help=f"gs://NAME, mounted at {MOUNT} on every worker (runs go to gs://NAME/runs/<run>)")
  parser.add_argument("--python-version", type=python_version, default="3.11", help="the workers' Python")
  return parser


def _model_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(add_help=False)
  parser.add_argument("--preset", default=DEFAULT_PRESET, help=f"a preset of --config-file (default {DEFAULT_PRESET})")
  parser.add_argument("--config-file", default=DEFAULT_CONFIG_FILE, help="relative to the repository root")
  parser.add_argument("--hf-model", type=hf_repo,
                      help="Hugging Face repository setup downloads to every worker and the run starts from "
                           f"(default for a preset: {HF_MODELS}; '' for none)")
  parser.add_argument("--checkpoint", type=remote_path,
                      help="the Hugging Face checkpoint directory on the workers (default: where setup puts "
                           f"--hf-model, {REMOTE_MODELS}/<name>)")
  return parser


def _run_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(add_help=False)
  parser.add_argument("--run", dest="run_name", type=run_name,
                      help=f"the run's name; its work directory is {MOUNT}/runs/<run> (default: --name)")
  return parser


def _sync_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(add_help=False)
  parser.add_argument("--ref", type=git_ref, default="HEAD", help="the commit whose files are copied")
  return parser


@dataclasses.dataclass(frozen=True)
class Subcommand:
  """A subcommand: what it does, its argument groups (GROUPS), and whether training overrides follow '--'."""
  do: Callable[[Runner, argparse.Namespace], None]
  help: str
  groups: tuple[str, ...] = ()
  takes_overrides: bool = False


_EVERYTHING = ("resource", "slice", "setup", "model", "run", "sync")
SUBCOMMANDS = {
    "create": Subcommand(do_create, "create the TPU VM or queued resource and wait until it is ready",
                         ("resource", "slice")),
    "sync": Subcommand(do_sync, "copy the repository (git archive of --ref) to every worker", ("sync",)),
    "setup": Subcommand(do_setup, "mount the bucket; install Python, the project, jax[tpu] and the starting "
                                  "checkpoint on every worker", ("setup", "model")),
    "launch": Subcommand(do_launch, "start training on every worker in the background", ("model", "run"), True),
    "logs": Subcommand(do_logs, "follow a worker's training log", ("run",)),
    "tensorboard": Subcommand(do_tensorboard, "serve TensorBoard on worker 0 through an ssh tunnel", ("run",)),
    "stop": Subcommand(do_stop, "stop the run's trainer on every worker (launch or resume starts it again)",
                       ("run",)),
    "resume": Subcommand(do_resume, "relaunch the run, recreating the slice first if it was preempted",
                         _EVERYTHING, True),
    "delete": Subcommand(do_delete, "delete the TPU VM or queued resource", ("resource",)),
    "up": Subcommand(do_up, "create + sync + setup + launch", _EVERYTHING, True),
}
GROUPS = {"resource": _resource_parser, "slice": _slice_parser, "setup": _setup_parser, "model": _model_parser,
          "run": _run_parser, "sync": _sync_parser}


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  subparsers = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
  for name, subcommand in SUBCOMMANDS.items():
    parents = [_target_parser()] + [GROUPS[group]() for group in subcommand.groups]
    sub = subparsers.add_parser(name, parents=parents, help=subcommand.help, description=subcommand.help)
    if name == "logs":
      sub.add_argument("--worker", type=int, default=0, help="whose log (default 0)")
      sub.add_argument("--lines", type=int, default=200, help="lines of history to show first")
    if name == "tensorboard":
      sub.add_argument("--port", type=port_number, default=6006, help="local and remote port")
  return parser


def resolve(parser: argparse.ArgumentParser, args: argparse.Namespace, overrides: Sequence[str]) -> None:
  """Checks the arguments against each other and gathers them into args.target, args.slice and args.run."""
  groups = SUBCOMMANDS[args.subcommand].groups
  if overrides and not SUBCOMMANDS[args.subcommand].takes_overrides:
    parser.error(f"{args.subcommand} takes no training overrides after '--'")
  queued = getattr(args, "queued", False)
  qr_name = getattr(args, "qr_name", None) or f"{args.name}-qr"
  if queued and not re.fullmatch(_RESOURCE_NAME, qr_name):
    parser.error(f"the queued resource name {qr_name!r} is too long: give --qr-name")
  args.target = Target(args.name, args.zone, args.project, queued, qr_name if queued else "")
  if "slice" in groups:
    args.slice = _resolve_slice(parser, args, queued)
  args.run = _resolve_run(parser, args, groups, overrides)


def _resolve_slice(parser: argparse.ArgumentParser, args: argparse.Namespace, queued: bool) -> Slice:
  generation = args.accelerator.rsplit("-", 1)[0]
  runtime = args.runtime_version or RUNTIME_VERSIONS.get(generation)
  if runtime is None:
    parser.error(f"unknown accelerator generation {generation!r} in --accelerator {args.accelerator}: the known "
                 f"ones are {', '.join(RUNTIME_VERSIONS)} (e.g. v5p-8, v6e-8); for another, give --runtime-version")
  if args.valid_until_duration and not queued:
    parser.error("--valid-until-duration applies to queued resources only: add --queued")
  return Slice(args.accelerator, runtime, args.spot, args.reserved, args.valid_until_duration)


def _resolve_run(parser: argparse.ArgumentParser, args: argparse.Namespace, groups: Sequence[str],
                 overrides: Sequence[str]) -> Run:
  run = getattr(args, "run_name", None) or args.name
  if "model" not in groups:
    return Run(run, preset="")
  presets = config_presets(REPO_ROOT / args.config_file)
  if presets is not None and args.preset not in presets:
    parser.error(f"--preset {args.preset!r} is not one of {args.config_file}'s presets: {', '.join(presets)}")
  hf_model = args.hf_model
  if hf_model is None:
    hf_model = "" if args.checkpoint else HF_MODELS.get(args.preset, "")
  checkpoint = args.checkpoint or (model_directory(hf_model) if hf_model else "")
  if args.preset in HF_MODELS and not checkpoint:
    parser.error(f"the {args.preset} preset starts from a Hugging Face checkpoint: give --hf-model "
                 f"(e.g. {HF_MODELS[args.preset]}) or --checkpoint")
  try:
    checked = tuple(training_override(o) for o in overrides)
  except ValueError as e:
    parser.error(str(e))
  sized_for = PRESET_GENERATIONS.get(args.preset)
  accelerator = getattr(args, "accelerator", None)
  if sized_for and accelerator and not accelerator.startswith(sized_for + "-"):
    others = [p for p, g in PRESET_GENERATIONS.items() if accelerator.startswith(g + "-")]
    print(f"warning: the {args.preset} preset's mesh and sizes fit {sized_for} chips (docs/tpu_memory.md), "
          f"not {accelerator}" + (f"; use --preset {others[0]}" if others else
                                  "; check them with scripts/compile_tpu.py first"), file=sys.stderr)
  return Run(run, args.preset, args.config_file, checkpoint, hf_model, checked)


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  overrides: list[str] = []
  if "--" in argv:
    split = argv.index("--")
    argv, overrides = argv[:split], argv[split + 1:]
  parser = build_parser()
  args = parser.parse_args(argv)
  resolve(parser, args, overrides)
  try:
    SUBCOMMANDS[args.subcommand].do(Runner(args.dry_run), args)
  except LaunchError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    return 130
  return 0


if __name__ == "__main__":
  sys.exit(main())
