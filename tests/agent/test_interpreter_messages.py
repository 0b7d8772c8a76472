"""The typed wire between the pool and its workers: every message round-trips through JSON, and a
malformed reply becomes a crashed (or error) result with a clear message, never an exception."""
from __future__ import annotations

import json

import pytest

from rao_jax.agent.interpreter import CellStatus, InterpreterConfig, InterpreterPool, protocol
from rao_jax.agent.interpreter import messages as m
from rao_jax.envs.base import PromptParts
from test_interpreter_toy_env import TOY_ENV

PROMPT = PromptParts(rules="R", delegation_rules="D", goal="G é", tool_docs="T")
LIMITS = dict(max_depth=3, delegation=True)


def _through_json(wire):
  return json.loads(json.dumps(wire, allow_nan=False))


RUN = m.RunRequest((m.RunItem(3, "print(1)"), m.RunItem(4, "")))
REQUESTS = [
    m.CreateRequest((m.RootSpec("env", {"world": "small"}, {"target": [1, {"a": None}]}),),
                    m.TreeLimits(max_depth=2, delegation=False)),
    RUN,
    m.ResumeRequest((m.ResumeItem(7, ((8, "done"), (9, {"x": [1.5, True]}))), m.ResumeItem(10, ()))),
    m.ReleaseRequest((1, 2, 3)),
]
CELL_REPLIES = [
    m.CellReply(CellStatus.OUTPUT, "hi\n"),
    m.CellReply(CellStatus.ERROR, "Error: x"),
    m.CellReply(CellStatus.FINISHED, "", finish_value={"a": [1, "b"]}, success=1.0),
    m.CellReply(CellStatus.SUSPENDED, "waiting", spawns=(m.ChildSpawned(5, 1, PROMPT),
                                                         m.ChildSpawned(6, 1, PROMPT))),
    m.CellReply(CellStatus.SUSPENDED, ""),
    m.CellReply(CellStatus.CRASHED, "Error: gone"),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: r.OP)
def test_requests_round_trip(request_):
  assert m.request_from_wire(_through_json(request_.to_wire())) == request_


@pytest.mark.parametrize("reply", CELL_REPLIES, ids=lambda r: r.status.value)
def test_cell_replies_round_trip(reply):
  assert m.CellReply.from_wire(_through_json(reply.to_wire())) == reply
  batch = m.Reply((reply, reply))
  assert m.Reply.from_wire(_through_json(batch.to_wire()), m.RunRequest(RUN.cells)) == batch


def test_start_up_and_create_messages_round_trip():
  settings = m.WorkerSettings(cell_time_limit_s=1.5, memory_limit_mb=512, max_output_chars=100,
                              env_modules=("a.b",), preload_environments=("textcraft_synth",))
  init = m.InitRequest(settings, ("/x", "/y"), "/tmp/scratch")
  assert m.InitRequest.from_wire(_through_json(init.to_wire())) == init
  for reply in (m.InitReply(sandbox={"rlimits": "on"}), m.InitReply(error="Traceback ...")):
    assert m.InitReply.from_wire(_through_json(reply.to_wire())) == reply
  create = m.CreateRequest(REQUESTS[0].roots * 2, REQUESTS[0].limits)
  roots = m.Reply((m.RootReply(0, PROMPT), m.RootReply(error="Error: no such environment")))
  assert m.Reply.from_wire(_through_json(roots.to_wire()), create) == roots


def test_status_serialises_as_its_value():
  assert json.dumps(CellStatus.SUSPENDED) == '"suspended"' and CellStatus("crashed") is CellStatus.CRASHED
  assert m.CellReply(CellStatus.OUTPUT, "x").to_wire() == {"status": "output", "text": "x"}


@pytest.mark.parametrize("item, message", [
    (["output", "text"], "cell reply: expected a JSON object, got list"),
    ({"status": "exploded", "text": ""}, "cell reply: unknown status 'exploded'"),
    ({"status": 3, "text": ""}, "cell reply: field 'status' must be a string, got int"),
    ({"status": "output"}, "cell reply: missing field 'text'"),
    ({"status": "finished", "text": "", "success": 1.0}, "cell reply: missing field 'finish_value'"),
    ({"status": "finished", "text": "", "finish_value": 1, "success": 2.0}, "success must lie in [0, 1]"),
    ({"status": "finished", "text": "", "finish_value": 1, "success": True}, "'success' must be a number"),
    ({"status": "output", "text": "", "spawns": [{"key": 1, "depth": 1, "prompt": {}}]},
     "spawn prompt: missing field 'rules'"),
    ({"status": "error", "text": "", "spawns": [
        {"key": 1, "depth": 1, "prompt": dict(rules="", delegation_rules="", goal="", tool_docs="")}]},
     "only a suspended reply carries spawns, not 'error'"),
])
def test_a_malformed_item_becomes_a_crash_of_that_item(item, message):
  reply = m.Reply.from_wire({"items": [CELL_REPLIES[0].to_wire(), item]}, RUN)
  good, bad = reply.items
  assert good == CELL_REPLIES[0]
  assert bad.status is CellStatus.CRASHED and bad.text.startswith("Error: malformed interpreter reply")
  assert message in bad.text


@pytest.mark.parametrize("frame, message", [
    ([], "reply: expected a JSON object, got list"),
    ({"answers": []}, "reply: missing field 'items'"),
    ({"items": [{"status": "output", "text": ""}]}, "reply: 1 items for a request of 2"),
])
def test_a_malformed_frame_is_a_wire_error(frame, message):
  with pytest.raises(m.WireError, match=message.replace("[", r"\[")):
    m.Reply.from_wire(frame, RUN)


def test_malformed_requests_and_root_replies_are_named():
  with pytest.raises(m.WireError, match="unknown op 'explode'"):
    m.request_from_wire({"op": "explode"})
  with pytest.raises(m.WireError, match="tree limits: field 'delegation' must be a boolean"):
    m.request_from_wire({"op": "create", "roots": [], "limits": {"max_depth": 1, "delegation": 0}})
  [root] = m.Reply.from_wire({"items": [{"key": "0", "prompt": {}}]}, REQUESTS[0]).items
  assert root.error == ("Error: malformed interpreter reply (root reply: field 'key' must be an integer, "
                        "got str)")


@pytest.fixture(scope="module")
def pool():
  with InterpreterPool(InterpreterConfig(num_workers=1, env_modules=("test_interpreter_toy_env",))) as pool:
    yield pool


def _tamper(monkeypatch, replace):
  """Replaces every reply frame the pool decodes by `replace(frame)`."""
  feed = protocol.FrameReader.feed

  def tampered(self, data):
    message = feed(self, data)
    return message if message is protocol.FrameReader.INCOMPLETE else replace(message)

  monkeypatch.setattr(protocol.FrameReader, "feed", tampered)


_ids = iter(range(100, 10**6))


def _root(pool) -> int:
  node = next(_ids)
  [prompt] = pool.create_roots([(node, TOY_ENV, {}, {"target": 1})], **LIMITS)
  assert isinstance(prompt, PromptParts), prompt
  return node


@pytest.mark.parametrize("item, message", [
    ("output", "expected a JSON object, got str"),
    ({"status": "bogus", "text": "x"}, "unknown status 'bogus'"),
    ({"status": "output"}, "missing field 'text'"),
])
def test_pool_turns_a_malformed_cell_reply_into_a_crash(pool, monkeypatch, item, message):
  node, other = _root(pool), _root(pool)
  with monkeypatch.context() as patch:
    _tamper(patch, lambda frame: {"items": [item, frame["items"][1]]})
    crashed, fine = pool.run_cells([(node, "1"), (other, "print('ok')")])
  assert crashed.status is CellStatus.CRASHED and message in crashed.text
  assert (fine.status, fine.text) == (CellStatus.OUTPUT, "ok\n")
  [later] = pool.run_cells([(node, "1")])
  assert later.status is CellStatus.CRASHED  # the node's state can no longer be trusted
  pool.release([node, other])


def test_pool_turns_a_malformed_frame_into_crashes_and_a_fresh_worker(pool, monkeypatch):
  node = _root(pool)
  with monkeypatch.context() as patch:
    _tamper(patch, lambda frame: ["not", "a", "reply"])
    [crashed] = pool.run_cells([(node, "1")])
  assert crashed.status is CellStatus.CRASHED
  assert "malformed reply (reply: expected a JSON object, got list)" in crashed.text
  fresh = _root(pool)
  [result] = pool.run_cells([(fresh, "print('alive')")])
  assert result.text == "alive\n"
  pool.release([node, fresh])


def test_pool_turns_a_malformed_root_reply_into_an_error_string(pool, monkeypatch):
  with monkeypatch.context() as patch:
    _tamper(patch, lambda frame: {"items": [{"key": 0, "prompt": ["R", "D", "G", "T"]}]})
    [prompt] = pool.create_roots([(next(_ids), TOY_ENV, {}, {"target": 1})], **LIMITS)
  assert prompt.startswith("Error: malformed interpreter reply") and "field 'prompt'" in prompt
