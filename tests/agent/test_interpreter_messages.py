"""The typed wire between the pool and a node process: every message round-trips through JSON, a
malformed message is a `WireError` naming the message and field, and frames are split and bounded.
(What the pool does with a node that sends such messages: test_interpreter_boundary.py.)"""
from __future__ import annotations

import json

import pytest

from rao_jax.agent.interpreter import CellStatus, protocol
from rao_jax.agent.interpreter import messages as m


def _through_json(wire):
  return json.loads(json.dumps(wire, allow_nan=False))


TO_NODE = [
    m.NodeStart(2, m.TreeLimits(max_depth=3, delegation=True), 1.5, 100,
                {"context": "long text é", "n": [1, {"a": None}]}, ("craft", "get_info")),
    m.RunCell("print(1)"),
    m.ResumeCell(((8, "done"), (9, {"x": [1.5, True]}))),
    m.ToolResult({"inventory": ["a", 1]}),
    m.ToolResult(None),
    m.LaunchResult(child=12),
    m.LaunchResult(error="Error: refused"),
]
FROM_NODE = [
    m.NodeReady({"rlimits": "on", "seccomp": "on"}),
    m.ToolCall("craft", ("m0_i3", 2), {"count": 1}),
    m.LaunchCall(({"m0_i3": 1},), {"context": "chunk"}),
    m.CellReply(CellStatus.OUTPUT, "hi\n"),
    m.CellReply(CellStatus.ERROR, "Error: x"),
    m.CellReply(CellStatus.FINISHED, "", finish_value={"a": [1, "b"]}),
    m.CellReply(CellStatus.SUSPENDED, "waiting"),
]


@pytest.mark.parametrize("message", TO_NODE, ids=lambda x: x.OP)
def test_messages_to_a_node_round_trip(message):
  assert m.to_node_from_wire(_through_json(message.to_wire())) == message


@pytest.mark.parametrize("message", FROM_NODE, ids=lambda x: x.OP)
def test_messages_from_a_node_round_trip(message):
  assert m.node_message_from_wire(_through_json(message.to_wire())) == message


def test_status_serialises_as_its_value():
  assert json.dumps(CellStatus.FINISHED) == '"finished"'
  assert CellStatus("suspended") is CellStatus.SUSPENDED


@pytest.mark.parametrize("wire, message", [
    ("output", "expected a JSON object, got str"),
    ({"status": "output"}, "missing field 'op'"),
    ({"op": "explode"}, "unknown op 'explode'"),
    ({"op": "reply", "status": "bogus", "text": "x"}, "unknown status 'bogus'"),
    ({"op": "reply", "status": "crashed", "text": "x"}, "unknown status 'crashed'"),
    ({"op": "reply", "status": "output"}, "missing field 'text'"),
    ({"op": "reply", "status": "finished", "text": ""}, "missing field 'finish_value'"),
    ({"op": "tool", "name": 3, "args": [], "kwargs": {}}, "field 'name' must be a string"),
    ({"op": "tool", "name": "craft", "args": {}, "kwargs": {}}, "field 'args' must be a list"),
    ({"op": "launch", "args": [], "kwargs": []}, "field 'kwargs' must be an object"),
    ({"op": "ready", "sandbox": {"seccomp": 1}}, "sandbox layer 'seccomp' must be a string"),
    ({"op": "run", "code": "1"}, "unknown op 'run'"),  # the pool's message, not a node's
])
def test_malformed_node_messages_are_named(wire, message):
  with pytest.raises(m.WireError, match=message):
    m.node_message_from_wire(wire)


@pytest.mark.parametrize("wire, message", [
    ({"op": "start", "depth": 0, "limits": {"max_depth": 1, "delegation": 0},
      "cell_time_limit_s": 1, "max_output_chars": 9, "variables": {}, "tools": []},
     "tree limits: field 'delegation' must be a boolean"),
    ({"op": "start", "depth": 0, "limits": {"max_depth": -1, "delegation": True},
      "cell_time_limit_s": 1, "max_output_chars": 9, "variables": {}, "tools": []},
     "max_depth must be >= 0"),
    ({"op": "resume", "deliveries": [[1]]}, "every delivery must be a \\[child id, value\\] pair"),
    ({"op": "resume", "deliveries": [["1", "x"]]}, "child id must be an integer"),
    ({"op": "launch_result", "child": True}, "field 'child' must be an integer"),
])
def test_malformed_pool_messages_are_named(wire, message):
  with pytest.raises(m.WireError, match=message):
    m.to_node_from_wire(wire)


def test_frame_reader_splits_joined_frames_and_waits_for_partial_ones():
  frames = b"".join(protocol.encode(x) for x in ({"a": 1}, [2], "three"))
  reader = protocol.FrameReader()
  assert reader.feed(frames[:5]) == []
  assert reader.feed(frames[5:-3]) == [{"a": 1}, [2]]
  assert reader.feed(frames[-3:]) == ["three"]


def test_frame_reader_refuses_oversized_and_malformed_frames():
  with pytest.raises(protocol.ProtocolError, match="exceeds 100"):
    protocol.FrameReader(max_frame_bytes=100).feed((1 << 40).to_bytes(8, "big"))
  with pytest.raises(protocol.ProtocolError, match="malformed frame"):
    protocol.FrameReader().feed((3).to_bytes(8, "big") + b"{x}")
  deep = b"[" * 100_000 + b"]" * 100_000
  with pytest.raises(protocol.ProtocolError, match="malformed frame"):
    protocol.FrameReader().feed(len(deep).to_bytes(8, "big") + deep)
