"""Length-prefixed JSON frames over pipes between the pool and its workers.

JSON (not pickle) in both directions: a worker whose sandbox was breached can send malformed data
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
  """A frame was malformed, too large, or the pipe closed mid-frame."""


def encode(message: Any) -> bytes:
  payload = json.dumps(message, separators=(",", ":"), allow_nan=False).encode("utf-8")
  return _HEADER.pack(len(payload)) + payload


def write_bytes(fd: int, data: bytes) -> None:
  """Writes all of `data` (an encoded frame) to `fd`."""
  view = memoryview(data)
  while view:
    written = os.write(fd, view)
    view = view[written:]


def write_frame(fd: int, message: Any) -> None:
  write_bytes(fd, encode(message))


def _read_exactly(fd: int, size: int) -> bytes | None:
  chunks, remaining = [], size
  while remaining:
    chunk = os.read(fd, min(remaining, 1 << 20))
    if not chunk:
      if remaining == size:
        return None
      raise ProtocolError("pipe closed in the middle of a frame")
    chunks.append(chunk)
    remaining -= len(chunk)
  return b"".join(chunks)


def read_frame(fd: int) -> Any:
  """The next message on `fd` (blocking), or None at end of file."""
  header = _read_exactly(fd, _HEADER.size)
  if header is None:
    return None
  (size,) = _HEADER.unpack(header)
  if size > MAX_FRAME_BYTES:
    raise ProtocolError(f"frame of {size} bytes exceeds {MAX_FRAME_BYTES}")
  payload = _read_exactly(fd, size)
  if payload is None:
    raise ProtocolError("pipe closed in the middle of a frame")
  return json.loads(payload)


class FrameReader:
  """Accumulates bytes read without blocking until one whole frame has arrived."""

  def __init__(self):
    self._buffer = bytearray()

  def feed(self, data: bytes) -> Any:
    """Adds `data`; returns the decoded message once complete, else `FrameReader.INCOMPLETE`."""
    self._buffer += data
    if len(self._buffer) < _HEADER.size:
      return FrameReader.INCOMPLETE
    (size,) = _HEADER.unpack_from(self._buffer)
    if size > MAX_FRAME_BYTES:
      raise ProtocolError(f"frame of {size} bytes exceeds {MAX_FRAME_BYTES}")
    if len(self._buffer) < _HEADER.size + size:
      return FrameReader.INCOMPLETE
    if len(self._buffer) > _HEADER.size + size:
      raise ProtocolError("unexpected bytes after a frame")
    try:
      return json.loads(bytes(self._buffer[_HEADER.size:]))
    except ValueError as error:
      raise ProtocolError(f"malformed frame: {error}") from None
    finally:
      self._buffer.clear()

  INCOMPLETE = object()
