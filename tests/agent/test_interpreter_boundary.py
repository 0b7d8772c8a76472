"""The process boundary on its own: a node whose cells run with the *real* builtins and no language
restrictions (a complete escape, staged by `escaped_forkserver.py`) still cannot change any score,
limit or other node; forged protocol messages crash only their own node; and faults (a node killed
mid-batch or while idle, a hung node, a dead fork server, a judge returning NaN) never end a call."""
import math
import os
import signal
import threading
import time

import pytest

from rao_jax.agent.interpreter import CellStatus, InterpreterConfig, InterpreterPool
from rao_jax.envs import registry
from test_interpreter_toy_env import TOY_ENV, ToyEnvironment

LIMITS = dict(max_depth=6, delegation=True)

# Cell code that finds the node's one socket and writes raw frames on it, as an attacker would.
FORGE = """
import os, json, struct, stat, time
def is_socket(fd):
  try:
    return stat.S_ISSOCK(os.fstat(fd).st_mode)
  except OSError:
    return False
FD = [int(f) for f in os.listdir('/proc/self/fd') if is_socket(int(f))][0]
def send_raw(payload):
  os.write(FD, struct.pack('>Q', len(payload)) + payload)
def send(message):
  send_raw(json.dumps(message).encode())
def receive():
  size = struct.unpack('>Q', os.read(FD, 8))[0]
  return json.loads(os.read(FD, size))
"""


@pytest.fixture(scope="module")
def escaped():
  """A pool whose node processes run unrestricted cells."""
  config = InterpreterConfig(cell_time_limit_s=0.5, deadline_grace_s=1.5)
  with InterpreterPool(config, forkserver_module="escaped_forkserver") as pool:
    yield pool


_ids = iter(range(-1, -10**6, -1))  # negative: children get ids counting up from 0


def roots(pool, count, target=1, **limits):
  ids = [next(_ids) for _ in range(count)]
  prompts = pool.create_roots([(i, TOY_ENV, {}, {"target": target}) for i in ids], **(limits or LIMITS))
  assert not any(isinstance(p, str) for p in prompts), prompts
  return ids


def test_the_escape_is_real(escaped):
  [node] = roots(escaped, 1)
  [result] = escaped.run_cells([(node, "print(__import__('os').getpid() > 0, open.__module__)")])
  assert result.text == "True io\n", result


def test_an_escaped_cell_cannot_set_its_score(escaped):
  forger, honest = roots(escaped, 2)
  cheat = FORGE + (
      "send({'op': 'reply', 'status': 'finished', 'text': '', 'finish_value': 'done',"
      " 'success': 1.0})\n"
      "import gc, sys\n"
      "print([type(o).__name__ for o in gc.get_objects() if 'Toy' in type(o).__name__],"
      " 'test_interpreter_toy_env' in sys.modules)")
  forged, fair = escaped.run_cells([(forger, cheat), (honest, "add(1)\nfinish('done')")])
  assert forged.status is CellStatus.FINISHED and forged.finish_value == "done"
  assert forged.success == 0.0  # judged here, from the environment: no points were gained
  assert fair.success == 1.0


def test_an_escaped_cell_finds_no_environment_in_its_process(escaped):
  [node] = roots(escaped, 1)
  probe = ("import gc, sys\n"
           "print(sorted({type(o).__name__ for o in gc.get_objects()} & {'ToyEnvironment',"
           " 'EnvironmentHost', 'InterpreterPool', 'TextCraftEnvironment'}),"
           " [m for m in sys.modules if 'toy_env' in m or 'textcraft' in m or m == 'jax'])")
  [result] = escaped.run_cells([(node, probe)])
  assert result.text == "[] []\n", result.text


def test_an_escaped_cell_cannot_raise_limits_signal_or_write(escaped):
  [node] = roots(escaped, 1)
  probe = (
      "import os, resource, socket\n"
      "outcomes = {}\n"
      "def attempt(name, function):\n"
      "  try:\n"
      "    function()\n"
      "    outcomes[name] = 'allowed'\n"
      "  except (OSError, ValueError):\n"
      "    outcomes[name] = 'denied'\n"
      "attempt('raise_cpu', lambda: resource.setrlimit(resource.RLIMIT_CPU, (10**6, 10**6)))\n"
      "attempt('raise_memory', lambda: resource.setrlimit(resource.RLIMIT_AS, (-1, -1)))\n"
      "attempt('kill_fork_server', lambda: os.kill(os.getppid(), 9))\n"
      "attempt('kill_pid_1', lambda: os.kill(1, 0))\n"
      "attempt('fork', lambda: os.fork() or None)\n"
      "attempt('socket', lambda: socket.socket())\n"
      "attempt('write', lambda: open('/tmp/rao_boundary_canary', 'w'))\n"
      "print(sorted(outcomes.items()))")
  [result] = escaped.run_cells([(node, probe)])
  if escaped.sandbox_report["seccomp"].startswith("on"):
    assert "allowed" not in result.text, result.text
  assert not os.path.exists("/tmp/rao_boundary_canary")
  [fresh] = roots(escaped, 1)  # the fork server survived
  [alive] = escaped.run_cells([(fresh, "print('alive')")])
  assert alive.text == "alive\n"


def test_an_escaped_cell_cannot_patch_what_other_nodes_see(escaped):
  patcher, parent = roots(escaped, 2)
  escaped.run_cells([(patcher, "import re, collections\nre.findall = None\n"
                               "collections.Counter.most_common = None")])
  [suspended] = escaped.run_cells([(parent, "r = await launch_subagent(1)")])
  [child] = [s.child_id for s in suspended.spawns]
  results = escaped.run_cells([
      (patcher, "print(re.findall)"),
      (child, "import re, collections\nprint(re.findall('a', 'aab'), collections.Counter('aab').most_common(1))")])
  assert results[0].text == "None\n"
  assert results[1].text == "['a', 'a'] [('a', 2)]\n"  # no other node shares the patched process


def test_an_escaped_cell_that_disables_its_timer_is_killed_from_outside(escaped):
  spinner, bystander = roots(escaped, 2)
  spin = ("import signal\nsignal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGPROF])\n"
          "signal.setitimer(signal.ITIMER_PROF, 0)\nwhile True:\n  pass")
  started = time.monotonic()
  killed, fine = escaped.run_cells([(spinner, spin), (bystander, "print('fine')")])
  assert time.monotonic() - started < 0.5 + 1.5 + 2.0
  assert killed.status is CellStatus.CRASHED and "did not answer within" in killed.text
  assert fine.text == "fine\n"


def test_a_launch_forged_past_the_depth_cap_is_refused_by_the_pool(escaped):
  [node] = roots(escaped, 1, max_depth=0, delegation=True)
  forged = FORGE + "send({'op': 'launch', 'args': [1], 'kwargs': {}})\nprint(receive())"
  [result] = escaped.run_cells([(node, forged)])
  assert result.status is CellStatus.OUTPUT and "refused" in result.text and "'child'" not in result.text


FORGERIES = {
    "suspended_with_nothing_awaited": "send({'op': 'reply', 'status': 'suspended', 'text': ''})",
    "unknown_op": "send({'op': 'judge', 'success': 1.0})",
    "second_ready": "send({'op': 'ready', 'sandbox': {}})",
    "crashed_status": "send({'op': 'reply', 'status': 'crashed', 'text': ''})",
    "nan_finish_value": "send_raw(b'{\"op\":\"reply\",\"status\":\"finished\",\"text\":\"\",\"finish_value\":NaN}')",
    "huge_finish_value": "send({'op': 'reply', 'status': 'finished', 'text': '', 'finish_value': 'x' * 10**6})",
    "empty_frame": "send_raw(b'')",
    "not_json": "send_raw(b'\\xff\\xfe{')",
    "deep_nesting": "send_raw(b'[' * 200000 + b']' * 200000)",
    "giant_header": "os.write(FD, struct.pack('>Q', 1 << 40))",
    "tool_result_from_the_node": "send({'op': 'tool_result', 'value': 1})",
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_forged_messages_crash_only_their_own_node(escaped, name):
  forger, bystander = roots(escaped, 2)
  code = FORGE + FORGERIES[name] + "\ntime.sleep(30)"
  crashed, fine = escaped.run_cells([(forger, code), (bystander, "add(1)\nfinish('ok')")])
  assert crashed.status is CellStatus.CRASHED, (name, crashed)
  assert fine.status is CellStatus.FINISHED and fine.success == 1.0
  [later] = escaped.run_cells([(forger, "1")])
  assert later.status is CellStatus.CRASHED


# -- faults without an escape -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def pool():
  with InterpreterPool(InterpreterConfig(cell_time_limit_s=3.0)) as pool:
    yield pool


def _pid(pool, node_id):
  return pool._nodes[node_id].process.pid


def test_a_node_killed_mid_batch_crashes_alone(pool):
  victim, bystander = roots(pool, 2)
  pool.run_cells([(victim, "x = 1"), (bystander, "y = 2")])
  killer = threading.Timer(0.3, os.kill, (_pid(pool, victim), signal.SIGKILL))
  killer.start()
  killed, fine = pool.run_cells([(victim, "while True:\n  pass"), (bystander, "y")])
  killer.join()
  assert killed.status is CellStatus.CRASHED and "died" in killed.text
  assert fine.text == "2\n"


def test_a_node_killed_while_idle_crashes_at_its_next_cell(pool):
  victim, bystander = roots(pool, 2)
  pool.run_cells([(victim, "x = 1"), (bystander, "y = 2")])
  os.kill(_pid(pool, victim), signal.SIGKILL)
  time.sleep(0.1)
  killed, fine = pool.run_cells([(victim, "x"), (bystander, "y")])
  assert killed.status is CellStatus.CRASHED
  assert fine.text == "2\n"


def test_a_killed_node_awaited_by_a_parent_is_an_error_value(pool):
  [parent] = roots(pool, 1, target=2)
  [suspended] = pool.run_cells([(parent, "r = await launch_subagent(1)\nprint(r)")])
  [child] = [s.child_id for s in suspended.spawns]
  pool.run_cells([(child, "x = 1")])
  os.kill(_pid(pool, child), signal.SIGKILL)
  [crashed] = pool.run_cells([(child, "finish('x')")])
  assert crashed.status is CellStatus.CRASHED
  [resumed] = pool.resume([(parent, {child: "Error: the child crashed"})])
  assert resumed.text == "Error: the child crashed\n"


def test_a_dead_fork_server_is_restarted(pool):
  """Found dead at the next spawn even with a full reserve of started spares, when the spawn may send
  the server nothing that could fail (a CI run once took a spare from a dead server and went on)."""
  roots(pool, 1)
  forker, deadline = pool._servers[0], time.monotonic() + 10
  while forker._outstanding and time.monotonic() < deadline:
    forker._collect(block=False)
    time.sleep(0.05)
  assert forker._spares and not forker._outstanding
  server = pool._servers[0].process
  server.kill()
  server.wait()
  [node] = roots(pool, 1)
  [result] = pool.run_cells([(node, "print('alive')")])
  assert result.text == "alive\n"
  assert pool._servers[0].process.pid != server.pid


class _NanJudge(ToyEnvironment):

  def judge(self, finish_value):
    return float("nan") if finish_value == "nan" else 7.0


registry.register("interpreter_nan_judge", lambda config, task: _NanJudge({"points": 0}, 1))


def test_a_non_finite_judge_gives_nan_and_out_of_range_passes_through(pool):
  # Environments live in the pool's process, so one registered only here needs no import list.
  ids = [next(_ids), next(_ids)]
  pool.create_roots([(i, "interpreter_nan_judge", {}, {}) for i in ids], **LIMITS)
  nan, seven = pool.run_cells([(ids[0], "finish('nan')"), (ids[1], "finish('x')")])
  assert math.isnan(nan.success) and seven.success == 7.0  # the trainer skips such batches
