"""Length-prefixed JSON frames over the sockets between the pool and its node processes.

JSON (not pickle) in both directions: a node whose sandbox was breached can send malformed data
but cannot make the trainer run code by unpickling. Every frame is an 8-byte big-endian length and a
UTF-8 JSON document.
"""
from __future__ import annotations

import json
import os
import struct
from typing import Any

_HEADER = struct.Struct(">Q")
MAX_FRAME_BYTES = 256 << 20


class ProtocolError(Exception):
  """A frame was malformed or too large."""


def encode(message: Any) -> bytes:
  return encode_text(json.dumps(message, separators=(",", ":"), allow_nan=False))


def encode_text(text: str) -> bytes:
  """The frame of a message already encoded as JSON text."""
  payload = text.encode("utf-8")
  return _HEADER.pack(len(payload)) + payload


def write_bytes(fd: int, data: bytes) -> None:
  """Writes all of `data` (an encoded frame) to `fd`."""
  view = memoryview(data)
  while view:
    written = os.write(fd, view)
    view = view[written:]


class FrameReader:
  """Splits bytes read without blocking into whole frames (a peer may send several at once)."""

  def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES):
    self._buffer = bytearray()
    self._max_frame_bytes = max_frame_bytes

  def feed(self, data: bytes) -> list[Any]:
    """Adds `data`; returns the messages of every frame it completed (possibly none).

    Raises ProtocolError for a frame above `max_frame_bytes` (checked from its header, before its
    payload is buffered) or a payload that is not JSON.
    """
    self._buffer += data
    messages = []
    while len(self._buffer) >= _HEADER.size:
      (size,) = _HEADER.unpack_from(self._buffer)
      if size > self._max_frame_bytes:
        raise ProtocolError(f"frame of {size} bytes exceeds {self._max_frame_bytes}")
      end = _HEADER.size + size
      if len(self._buffer) < end:
        break
      payload = bytes(self._buffer[_HEADER.size:end])
      del self._buffer[:end]
      try:
        messages.append(json.loads(payload))
      except (ValueError, RecursionError) as error:
        raise ProtocolError(f"malformed frame: {error}") from None
    return messages
