"""What a cell can reach at run time: restricted builtins, module proxies and the rewrite helpers.

Everything a cell holds is either a plain value, an object it created itself, or one of the wrappers
defined here (module proxies, tool wrappers in `cell.py`), none of which exposes a non-underscore
attribute leading to host state. The helpers named `__rao_*__` are the targets of the AST rewrites
in `restrictions.py`.
"""
from __future__ import annotations

import bisect
import collections
import copy
import functools
import heapq
import itertools
import json
import math
import random
import re
import statistics
import string
import types
import typing
from typing import Any, Callable

import _string  # The C helper `string.Formatter` uses to split field names.

from rao_jax.agent.interpreter import restrictions

CELL_MODULE = "__cell__"  # `__name__` of every node namespace, hence `__module__` of cell classes.
MAX_INT_BITS = 1_000_000  # `**` and `<<` refuse integer results larger than this.
MAX_COMBINATORIAL_N = 100_000  # math.factorial / comb / perm argument limit.


class Sealed:
  """Base of the sandbox's own objects: no subclassing by cells, copying, pickling or assignment."""
  __slots__ = ()

  def __init_subclass__(cls, **kwargs):
    if not cls.__module__.startswith("rao_jax."):
      raise TypeError("sandbox objects cannot be subclassed")
    super().__init_subclass__(**kwargs)

  def __reduce_ex__(self, protocol):
    raise TypeError(f"{type(self).__name__} objects cannot be copied")

  def __setattr__(self, name, value):
    raise AttributeError(f"{type(self).__name__} objects are read-only")

  def __delattr__(self, name):
    raise AttributeError(f"{type(self).__name__} objects are read-only")


class ModuleProxy(Sealed):
  """A read-only stand-in for an allow-listed module: only the listed members are reachable."""
  __slots__ = ("_name", "_members")

  def __init__(self, name: str, members: dict[str, Any]):
    object.__setattr__(self, "_name", name)
    object.__setattr__(self, "_members", dict(members))

  def __getattr__(self, attribute: str):
    members = object.__getattribute__(self, "_members")
    if attribute in members:
      return members[attribute]
    raise AttributeError(f"module {object.__getattribute__(self, '_name')!r} has no attribute "
                         f"{attribute!r} in the sandbox")

  def __dir__(self):
    return sorted(object.__getattribute__(self, "_members"))

  def __repr__(self):
    return f"<module {object.__getattribute__(self, '_name')!r} (sandboxed)>"


class Unavailable(Sealed):
  """A builtin the sandbox withholds; calling it explains why."""
  __slots__ = ("_name", "_hint")

  def __init__(self, name: str, hint: str = ""):
    object.__setattr__(self, "_name", name)
    object.__setattr__(self, "_hint", hint)

  def __call__(self, *args, **kwargs):
    hint = object.__getattribute__(self, "_hint")
    raise PermissionError(f"{object.__getattribute__(self, '_name')}() is not available in the "
                          f"sandbox{'; ' + hint if hint else ''}")

  def __repr__(self):
    return f"<unavailable builtin {object.__getattribute__(self, '_name')}>"


# ---------------------------------------------------------------------------------------------
# Format strings: `str.format` can read attributes (`"{0.__globals__}".format(f)`); check them.


class _CheckedFormatter(string.Formatter):

  def get_field(self, field_name, args, kwargs):
    first, rest = _string.formatter_field_name_split(field_name)
    value = self.get_value(first, args, kwargs)
    for is_attribute, key in rest:
      if is_attribute:
        refusal = restrictions.attribute_refusal(key)
        if refusal is not None:
          raise AttributeError(f"format field {field_name!r}: {refusal}")
        value = getattr(value, key)
      else:
        value = value[key]
    return value, first


_FORMATTER = _CheckedFormatter()


class BoundFormat(Sealed):
  """`s.format` / `s.format_map` with checked fields."""
  __slots__ = ("_text", "_mapping_only")

  def __init__(self, text: str, mapping_only: bool):
    object.__setattr__(self, "_text", text)
    object.__setattr__(self, "_mapping_only", mapping_only)

  def __call__(self, *args, **kwargs):
    text = object.__getattribute__(self, "_text")
    if object.__getattribute__(self, "_mapping_only"):
      if len(args) != 1 or kwargs:
        raise TypeError("format_map() takes exactly one mapping argument")
      return _FORMATTER.vformat(text, (), args[0])
    return _FORMATTER.vformat(text, args, kwargs)


class UnboundFormat(Sealed):
  """`str.format` / `str.format_map` read from the class."""
  __slots__ = ("_mapping_only",)

  def __init__(self, mapping_only: bool):
    object.__setattr__(self, "_mapping_only", mapping_only)

  def __call__(self, text, *args, **kwargs):
    if not isinstance(text, str):
      raise TypeError("descriptor 'format' requires a 'str' object")
    return BoundFormat(str.__str__(text), object.__getattribute__(self, "_mapping_only"))(
        *args, **kwargs)


def _is_str_class(obj: object) -> bool:
  return isinstance(obj, type) and issubclass(obj, str)


def checked_getattr(obj: object, name: str, *default: Any) -> Any:
  """`getattr` that refuses private/introspection attributes and checks `format` fields."""
  if len(default) > 1:
    raise TypeError(f"getattr expected at most 3 arguments, got {2 + len(default)}")
  refusal = restrictions.attribute_refusal(name)
  if refusal is not None:
    raise AttributeError(refusal)
  if name in restrictions.FORMAT_ATTRIBUTES:
    if isinstance(obj, str):
      return BoundFormat(str.__str__(obj), name == "format_map")
    if _is_str_class(obj):
      return UnboundFormat(name == "format_map")
  return getattr(obj, name, *default)


def checked_hasattr(obj: object, name: str) -> bool:
  if restrictions.attribute_refusal(name) is not None:
    return False
  return hasattr(obj, name)


def _created_by_a_cell(obj: object) -> bool:
  """Whether `obj` is a class, instance or function a cell defined (safe to modify)."""
  if isinstance(obj, types.FunctionType):
    return obj.__code__.co_filename == restrictions.CELL_FILENAME
  cls = obj if isinstance(obj, type) else type(obj)
  return cls.__module__ == CELL_MODULE


def checked_setattr(obj: object, name: str, value: Any) -> None:
  """Attribute assignment, allowed only on what cells created (no monkey-patching shared code)."""
  refusal = restrictions.attribute_refusal(name)
  if refusal is not None:
    raise AttributeError(refusal)
  if not _created_by_a_cell(obj):
    raise AttributeError(f"cannot set attribute {name!r} on {type(obj).__name__!r} objects the "
                         "cell did not create")
  setattr(obj, name, value)


def checked_delattr(obj: object, name: str) -> None:
  refusal = restrictions.attribute_refusal(name)
  if refusal is not None:
    raise AttributeError(refusal)
  if not _created_by_a_cell(obj):
    raise AttributeError(f"cannot delete attribute {name!r} of {type(obj).__name__!r} objects the "
                         "cell did not create")
  delattr(obj, name)


# ---------------------------------------------------------------------------------------------
# Arithmetic that C code would otherwise run for minutes without checking the time limit.


def _int_like(value: object) -> bool:
  return isinstance(value, int)


def checked_pow(base, exponent, modulus=None):
  """`base ** exponent` (and `pow`), refusing integer results above MAX_INT_BITS bits."""
  if modulus is None and _int_like(base) and _int_like(exponent) and exponent > 0 and abs(base) > 1:
    bits = exponent * math.log2(abs(base))
    if bits > MAX_INT_BITS:
      raise OverflowError(f"integer result too large (about {bits:.3g} bits; the sandbox allows "
                          f"{MAX_INT_BITS})")
  if modulus is None:
    return base ** exponent
  return pow(base, exponent, modulus)


def checked_lshift(value, shift):
  if _int_like(value) and _int_like(shift) and value and shift + value.bit_length() > MAX_INT_BITS:
    raise OverflowError(f"integer result too large (more than {MAX_INT_BITS} bits)")
  return value << shift


def _limited(function: Callable[..., Any]) -> Callable[..., Any]:

  @functools.wraps(function)
  def limited(*args):
    if any(isinstance(a, int) and a > MAX_COMBINATORIAL_N for a in args):
      raise OverflowError(f"math.{function.__name__} arguments above {MAX_COMBINATORIAL_N} are "
                          "not allowed in the sandbox")
    return function(*args)

  return limited


def checked_type(*args):
  """`type(obj)`; the three-argument form (building classes) is withheld."""
  if len(args) != 1:
    raise PermissionError("type() with 3 arguments is not available in the sandbox; use `class`")
  return type(args[0])


# ---------------------------------------------------------------------------------------------
# Modules.


def _public(module: types.ModuleType, names: typing.Iterable[str]) -> dict[str, Any]:
  return {name: getattr(module, name) for name in names}


def _math_members() -> dict[str, Any]:
  members = {name: getattr(math, name) for name in dir(math) if not name.startswith("_")}
  for name in ("factorial", "comb", "perm"):
    members[name] = _limited(members[name])
  return members


_SHARED_MODULES: dict[str, ModuleProxy] = {
    "math": ModuleProxy("math", _math_members()),
    "json": ModuleProxy("json", _public(json, ["dumps", "loads", "JSONDecodeError"])),
    "re": ModuleProxy("re", _public(re, [
        "compile", "search", "match", "fullmatch", "findall", "finditer", "split", "sub", "subn",
        "escape", "error", "Pattern", "Match", "IGNORECASE", "I", "MULTILINE", "M", "DOTALL", "S",
        "VERBOSE", "X", "ASCII", "A"])),
    "collections": ModuleProxy("collections", _public(collections, [
        "Counter", "defaultdict", "deque", "namedtuple", "OrderedDict", "ChainMap"])),
    "itertools": ModuleProxy("itertools", {
        name: getattr(itertools, name) for name in dir(itertools) if not name.startswith("_")}),
    "functools": ModuleProxy("functools", _public(functools, [
        "reduce", "partial", "lru_cache", "cache", "cmp_to_key"])),
    "string": ModuleProxy("string", _public(string, [
        "ascii_letters", "ascii_lowercase", "ascii_uppercase", "digits", "hexdigits", "octdigits",
        "punctuation", "printable", "whitespace", "capwords", "Template"])),
    "statistics": ModuleProxy("statistics", _public(statistics, [
        "mean", "fmean", "geometric_mean", "harmonic_mean", "median", "median_low", "median_high",
        "mode", "multimode", "pstdev", "pvariance", "stdev", "variance", "quantiles",
        "StatisticsError"])),
    "heapq": ModuleProxy("heapq", _public(heapq, [
        "heappush", "heappop", "heapify", "heappushpop", "heapreplace", "nlargest", "nsmallest",
        "merge"])),
    "bisect": ModuleProxy("bisect", _public(bisect, [
        "bisect", "bisect_left", "bisect_right", "insort", "insort_left", "insort_right"])),
    "copy": ModuleProxy("copy", _public(copy, ["copy", "deepcopy", "Error"])),
    "typing": ModuleProxy("typing", _public(typing, [
        "Any", "Callable", "Dict", "FrozenSet", "Iterable", "Iterator", "List", "Mapping",
        "Optional", "Sequence", "Set", "Tuple", "Union", "DefaultDict", "Deque", "NamedTuple",
        "Generator"])),
}
_RANDOM_FUNCTIONS = ("random", "randint", "randrange", "choice", "choices", "shuffle", "sample",
                     "uniform", "gauss", "normalvariate", "seed", "getrandbits", "triangular",
                     "expovariate")


def random_module(seed: int) -> ModuleProxy:
  """A node's own `random`: module-level functions bound to a generator seeded with `seed`."""
  generator = random.Random(seed)
  members = {name: getattr(generator, name) for name in _RANDOM_FUNCTIONS}
  members["Random"] = random.Random
  return ModuleProxy("random", members)


_EXCEPTIONS = (
    ArithmeticError, AssertionError, AttributeError, EOFError, Exception, ExceptionGroup,
    FloatingPointError, IndexError, KeyError, LookupError, MemoryError, NameError,
    NotImplementedError, OverflowError, PermissionError, RecursionError, RuntimeError,
    StopAsyncIteration, StopIteration, TimeoutError, TypeError, UnboundLocalError, UnicodeError,
    UnicodeDecodeError, UnicodeEncodeError, ValueError, ZeroDivisionError,
)
_PLAIN_BUILTINS = (
    abs, aiter, all, anext, any, ascii, bin, bool, bytearray, bytes, callable, chr, classmethod,
    complex, dict, dir, divmod, enumerate, filter, float, format, frozenset, hash, hex, id,
    int, isinstance, issubclass, iter, len, list, map, max, min, next, object, oct, ord, property,
    range, repr, reversed, round, set, slice, sorted, staticmethod, str, sum, super, tuple, zip,
)
_WITHHELD = ("open", "input", "eval", "exec", "compile", "globals", "locals", "vars", "breakpoint",
             "exit", "quit", "help", "memoryview")


def make_builtins(print_function: Callable[..., None], show: Callable[[Any], None],
                  import_function: Callable[..., Any]) -> dict[str, Any]:
  """The `__builtins__` of one node namespace."""
  table: dict[str, Any] = {f.__name__: f for f in _PLAIN_BUILTINS + _EXCEPTIONS}
  table.update({name: Unavailable(name) for name in _WITHHELD})
  table.update({
      "print": print_function, "getattr": checked_getattr, "hasattr": checked_hasattr,
      "setattr": checked_setattr, "delattr": checked_delattr, "type": checked_type,
      "pow": checked_pow, "NotImplemented": NotImplemented, "Ellipsis": Ellipsis,
      "__build_class__": __build_class__, "__import__": import_function, "__name__": CELL_MODULE,
      "__rao_show__": show, "__rao_pow__": checked_pow, "__rao_lshift__": checked_lshift,
      "__rao_getattr__": checked_getattr, "__rao_setattr__": checked_setattr,
      "__rao_delattr__": checked_delattr,
  })
  return table


def make_importer(node_module: Callable[[str], Any]) -> Callable[..., Any]:
  """The `__import__` behind a cell's import statements: allow-listed module proxies only.

  `node_module(name)` returns the node's own proxy for per-node modules (`random`, `asyncio`) and
  None for the shared ones.
  """

  def sandbox_import(name, globals=None, locals=None, fromlist=(), level=0):
    del globals, locals, fromlist
    if level or name not in restrictions.ALLOWED_MODULES:
      raise ImportError(f"import of {name!r} is not allowed in the sandbox")
    own = node_module(name)
    return own if own is not None else _SHARED_MODULES[name]

  return sandbox_import
