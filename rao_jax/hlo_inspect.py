"""Reads a compiled XLA program's text for buffers it materialises: proof that a loop updates its large
state in place rather than copying it.

`large_materialisations(hlo, min_bytes)` lists every instruction whose result has at least `min_bytes`
and is a new buffer: not a parameter, tuple access, bitcast or a scatter / dynamic-update-slice (which
XLA performs in place on a donated or loop-carried buffer). For the decode loop with `min_bytes` = one
layer of the KV cache, the list must be empty: each step may write its tokens into the cache, but any
copy or materialised slice of a layer's cache costs a pass over it per layer per step.
"""
from __future__ import annotations

import dataclasses
import re

# `%name = f32[64,1152,2,64]{3,2,1,0} fusion(...), ..., calls=%wrapped_scatter_computation, ...`
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%(?P<name>[\w.\-]+)\s*=\s*(?P<dtype>[a-z]+[0-9]*)\[(?P<dims>[0-9,]*)\]"
                          r"(?:\{[^}]*\})?\s+(?P<op>[\w\-]+)\(")
_CALLS = re.compile(r"calls=%(?P<callee>[\w.\-]+)")
_APPLIED = re.compile(r"(?:to_apply|calls)=%(?P<callee>[\w.\-]+)")
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%(?P<name>[\w.\-]+)\s.*\{\s*$")
_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "bf16": 2, "f16": 2, "s32": 4, "u32": 4,
                "f32": 4, "s64": 8, "u64": 8, "f64": 8}
# Ops whose result is an existing buffer (or updates one in place) rather than a new one.
_NOT_NEW = ("parameter", "get-tuple-element", "tuple", "bitcast", "constant", "while", "conditional",
            "call", "scatter", "dynamic-update-slice")
_IN_PLACE_ROOTS = ("scatter", "dynamic-update-slice")
_ROOT = re.compile(r"^\s*ROOT\s+%[\w.\-]+\s*=\s*\S+\s+(?P<op>[\w\-]+)\(")


@dataclasses.dataclass(frozen=True)
class Materialised:
  name: str
  op: str  # the instruction's op, or "fusion:<callee>"
  shape: tuple[int, ...]
  nbytes: int


def _computations(hlo: str) -> dict[str, list[str]]:
  """Each computation's instruction lines, by name."""
  blocks, current = {}, None
  for line in hlo.splitlines():
    header = _COMPUTATION.match(line)
    if header:
      current = blocks.setdefault(header["name"], [])
    elif current is not None:
      current.append(line)
  return blocks


def _root_op(lines: list[str]) -> str:
  for line in lines:
    match = _ROOT.match(line)
    if match:
      return match["op"]
  return ""


def large_materialisations(hlo: str, min_bytes: int) -> list[Materialised]:
  """The instructions of `hlo` (a compiled module's `as_text()`) that create a new buffer of at least
  `min_bytes` (see the module docstring for what counts as new). Only scheduled code is read (the entry,
  loop bodies and conditions), not the computations inlined into a fusion or applied by a reduce; a
  fusion whose root is a scatter or dynamic-update-slice updates its operand in place."""
  blocks = _computations(hlo)
  inlined = {m["callee"] for lines in blocks.values() for line in lines
             if " fusion(" in line or "to_apply=" in line for m in _APPLIED.finditer(line)}
  found = []
  for name, lines in blocks.items():
    if name in inlined:
      continue
    for line in lines:
      match = _INSTRUCTION.match(line)
      if not match or match["dtype"] not in _DTYPE_BYTES:
        continue
      shape = tuple(int(d) for d in match["dims"].split(",") if d)
      nbytes = _DTYPE_BYTES[match["dtype"]]
      for d in shape:
        nbytes *= d
      op = match["op"]
      if nbytes < min_bytes or op in _NOT_NEW:
        continue
      if op == "fusion":
        callee = _CALLS.search(line)
        callee = callee["callee"] if callee else ""
        if _root_op(blocks.get(callee, [])) in _IN_PLACE_ROOTS:
          continue
        op = f"fusion:{callee}"
      found.append(Materialised(name=match["name"], op=op, shape=shape, nbytes=nbytes))
  return found
