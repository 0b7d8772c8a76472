"""What a cell can reach at run time: restricted builtins, module proxies and the rewrite helpers.

Everything a cell holds is either a plain value, an object it created itself, or one of the wrappers
defined here (module proxies, stand-ins, tool wrappers in `cell.py`), none of which exposes a
non-underscore attribute leading to host state. The helpers named `__rao_*__` are the targets of the
AST rewrites in `restrictions.py`.

Language-layer rules enforced here (see docs/sandbox.md, layer 3):

* `type(x)` never returns a metaclass (`type` itself, `ABCMeta`, ...): cells get a
  `MetaclassStandIn`, which answers `isinstance`/`issubclass`/`__name__` but cannot build classes.
* Classes come only from `class` statements, through `checked_build_class` (metaclass `type` or
  `ABCMeta`, and a `__match_args__` that follows the attribute rules), or from `namedtuple` /
  `typing.NamedTuple`, whose field names follow the attribute rules.
* Class patterns with positional sub-patterns are checked at match time (`checked_match_class`).
* `ABC.register` is refused (it would change `isinstance` for every node of the process).
* `copy` is reimplemented: plain data, objects of classes the cell defined and a few library types,
  with a private memo and the reduce protocol only on those objects.
* `re` and `typing` hand out stand-ins, so cell objects (a `str` subclass with a hostile `__hash__`,
  say) never become keys of the modules' process-wide caches.
* Helpers that work only on the cell's own data are marked `@library_code`, so the CPU timer can
  interrupt them like library code (a deep copy of a huge list, a catastrophic regex).
"""
from __future__ import annotations

import abc
import bisect
import builtins
import collections
import collections.abc
import copy
import copyreg
import decimal
import enum
import fractions
import functools
import heapq
import itertools
import json
import math
import random
import re
import statistics
import string
import sys
import types
import typing
from typing import Any, Callable

import _string  # The C helper `string.Formatter` uses to split field names.

from rao_jax.agent.interpreter import restrictions

CELL_MODULE = "__cell__"  # `__name__` of every node namespace, hence `__module__` of cell classes.
MAX_INT_BITS = 1_000_000  # `**` and `<<` refuse integer results larger than this.
MAX_MODULAR_POW_COST = 10**8  # pow(b, e, m) refuses exponent bits * modulus bits above this.
MAX_COMBINATORIAL_N = 100_000  # math.factorial / comb / perm argument limit.
MAX_NAMEDTUPLE_FIELDS = 1000
MAX_TYPE_EXPRESSION_SIZE = 10_000  # Parts of one `typing` expression (`Dict[str, int]` has 3).
# File name of `@library_code` helpers: outside this package for the CPU timer, and still naming
# the real file for whoever reads a traceback.
LIBRARY_FILENAME = f"<library code> {__file__}"


# ---------------------------------------------------------------------------------------------
# Library code: helpers the CPU timer may interrupt.


def _relabel(code: types.CodeType) -> types.CodeType:
  consts = tuple(_relabel(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
  return code.replace(co_filename=LIBRARY_FILENAME, co_consts=consts)


def _functions_of(member: object) -> list[types.FunctionType]:
  if isinstance(member, types.FunctionType):
    return [member]
  if isinstance(member, (staticmethod, classmethod)):
    return _functions_of(member.__func__)
  if isinstance(member, property):
    return [f for f in (member.fget, member.fset, member.fdel) if isinstance(f, types.FunctionType)]
  return []


def library_code(target: Any) -> Any:
  """Marks a helper (a function, or every method of a class) as library code for the CPU timer.

  The timer never interrupts code whose file lies in this package (`time_limit.py`): sandbox code
  may be updating shared state. A helper that only works on the cell's own data (copying it,
  matching a regex on it, formatting it) touches no such state, and its running time follows the
  cell's arguments, so it must stay interruptible: its code objects (nested ones included) get a
  file name outside the package, and the timer treats them like any library function a cell calls.
  """
  for function in _functions_of(target) or [
      f for member in vars(target).values() for f in _functions_of(member)]:
    function.__code__ = _relabel(function.__code__)
  return target


_CONSTRUCT = object()  # Passed by this module to constructors that cells must not call themselves.


class Sealed:
  """Base of the sandbox's own objects: no subclassing by cells, copying, pickling or assignment.

  A subclass with `_immutable = True` (a stand-in, a regex proxy) is handed back unchanged by the
  sandbox's `copy.copy`/`copy.deepcopy`; the others (tools, modules, `finish`) cannot be copied.
  """
  __slots__ = ()
  _immutable = False

  def __init_subclass__(cls, **kwargs):
    if not cls.__module__.startswith("rao_jax."):
      raise TypeError("sandbox objects cannot be subclassed")
    super().__init_subclass__(**kwargs)

  def __mro_entries__(self, bases):
    raise TypeError(f"{type(self).__name__} objects cannot be subclassed")

  def __reduce_ex__(self, protocol):
    raise TypeError(f"{type(self).__name__} objects cannot be copied")

  def __setattr__(self, name, value):
    raise AttributeError(f"{type(self).__name__} objects are read-only")

  def __delattr__(self, name):
    raise AttributeError(f"{type(self).__name__} objects are read-only")


def _field(obj: Sealed, name: str) -> Any:
  return object.__getattribute__(obj, name)


class ModuleProxy(Sealed):
  """A read-only stand-in for an allow-listed module: only the listed members are reachable."""
  __slots__ = ("_name", "_members")

  def __init__(self, name: str, members: dict[str, Any]):
    object.__setattr__(self, "_name", name)
    object.__setattr__(self, "_members", dict(members))

  def __getattr__(self, attribute: str):
    members = _field(self, "_members")
    if attribute in members:
      return members[attribute]
    raise AttributeError(f"module {_field(self, '_name')!r} has no attribute {attribute!r} in the "
                         "sandbox")

  def __dir__(self):
    return sorted(_field(self, "_members"))

  def __repr__(self):
    return f"<module {_field(self, '_name')!r} (sandboxed)>"


class Unavailable(Sealed):
  """A builtin the sandbox withholds; calling it explains why."""
  __slots__ = ("_name", "_hint")

  def __init__(self, name: str, hint: str = ""):
    object.__setattr__(self, "_name", name)
    object.__setattr__(self, "_hint", hint)

  def __call__(self, *args, **kwargs):
    hint = _field(self, "_hint")
    raise PermissionError(f"{_field(self, '_name')}() is not available in the sandbox"
                          f"{'; ' + hint if hint else ''}")

  def __repr__(self):
    return f"<unavailable builtin {_field(self, '_name')}>"


# ---------------------------------------------------------------------------------------------
# Attributes: the attribute rules at run time, format strings, and ABC.register.


def _is_abc_register(value: object) -> bool:
  """Whether `value` (read as `x.register`) is ABCMeta.register (bound to any ABC), which registers
  a virtual subclass in a class shared by every node of the process
  (`typing.Sequence.register(dict)` made `isinstance({}, Sequence)` true everywhere, and set the
  sequence flag that `match` reads)."""
  return value is abc.ABCMeta.register or (
      type(value) is types.MethodType and value.__func__ is abc.ABCMeta.register)


def checked_getattr(obj: object, name: str, *default: Any) -> Any:
  """`getattr` with the attribute rules; `format` fields are checked and `ABC.register` refused."""
  if len(default) > 1:
    raise TypeError(f"getattr expected at most 3 arguments, got {2 + len(default)}")
  refusal = restrictions.attribute_refusal(name)
  if refusal is not None:
    raise AttributeError(refusal)
  if name in restrictions.FORMAT_ATTRIBUTES:
    if isinstance(obj, str):
      return BoundFormat(str.__str__(obj), name == "format_map")
    if isinstance(obj, type) and issubclass(obj, str):
      return UnboundFormat(name == "format_map")
  value = getattr(obj, name, *default)
  if name in restrictions.FORMAT_ATTRIBUTES:
    # Reached through something other than a str or str class: `super(S, s).format`.
    if value is str.format or value is str.format_map:
      return UnboundFormat(value is str.format_map)
    if (type(value) is types.BuiltinMethodType and isinstance(value.__self__, str)
        and value.__name__ in restrictions.FORMAT_ATTRIBUTES):
      return BoundFormat(str.__str__(value.__self__), value.__name__ == "format_map")
  if name == "register" and _is_abc_register(value):
    raise AttributeError("ABC.register is not available in the sandbox (a virtual subclass would "
                         "change isinstance() for every node); subclass the ABC instead")
  return value


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


class _CheckedFormatter(string.Formatter):
  """`string.Formatter` whose fields read attributes through `checked_getattr`."""

  @library_code
  def get_field(self, field_name, args, kwargs):
    first, rest = _string.formatter_field_name_split(field_name)
    value = self.get_value(first, args, kwargs)
    for is_attribute, key in rest:
      if is_attribute:
        try:
          value = checked_getattr(value, key)
        except AttributeError as error:
          raise AttributeError(f"format field {field_name!r}: {error}") from None
      else:
        value = value[key]
    return value, first


_FORMATTER = _CheckedFormatter()


class BoundFormat(Sealed):
  """`s.format` / `s.format_map` with checked fields."""
  __slots__ = ("_text", "_mapping_only")

  def __init__(self, text: str, mapping_only: bool):
    object.__setattr__(self, "_text", str.__str__(text))
    object.__setattr__(self, "_mapping_only", bool(mapping_only))

  @library_code
  def __call__(self, *args, **kwargs):
    text = _field(self, "_text")
    if _field(self, "_mapping_only"):
      if len(args) != 1 or kwargs:
        raise TypeError("format_map() takes exactly one mapping argument")
      return _FORMATTER.vformat(text, (), args[0])
    return _FORMATTER.vformat(text, args, kwargs)


class UnboundFormat(Sealed):
  """`str.format` / `str.format_map` read from the class."""
  __slots__ = ("_mapping_only",)

  def __init__(self, mapping_only: bool):
    object.__setattr__(self, "_mapping_only", bool(mapping_only))

  @library_code
  def __call__(self, text, *args, **kwargs):
    if not isinstance(text, str):
      raise TypeError("descriptor 'format' requires a 'str' object")
    return BoundFormat(str.__str__(text), _field(self, "_mapping_only"))(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# Arithmetic that C code would otherwise run for minutes without checking the time limit.


def _int_like(value: object) -> bool:
  return isinstance(value, int)


def checked_pow(base, exponent, modulus=None):
  """`base ** exponent` (and `pow`), refusing integer results above MAX_INT_BITS bits and modular
  powers whose cost (exponent bits times modulus bits) exceeds MAX_MODULAR_POW_COST."""
  if modulus is None and _int_like(base) and _int_like(exponent) and exponent > 0 and abs(base) > 1:
    if exponent.bit_length() > 64:
      raise OverflowError("integer result too large (the exponent has more than 64 bits)")
    bits = exponent * math.log2(abs(base))
    if bits > MAX_INT_BITS:
      raise OverflowError(f"integer result too large (about {bits:.3g} bits; the sandbox allows "
                          f"{MAX_INT_BITS})")
  if modulus is None:
    return base ** exponent
  if _int_like(base) and _int_like(exponent) and _int_like(modulus):
    cost = abs(exponent).bit_length() * max(abs(modulus).bit_length(), 1)
    if cost > MAX_MODULAR_POW_COST:
      raise OverflowError(f"pow(base, exponent, modulus) too costly ({cost:.3g} exponent bits "
                          f"times modulus bits; the sandbox allows {MAX_MODULAR_POW_COST:.0e})")
  return pow(base, exponent, modulus)


def checked_lshift(value, shift):
  if _int_like(value) and _int_like(shift) and value and shift + value.bit_length() > MAX_INT_BITS:
    raise OverflowError(f"integer result too large (more than {MAX_INT_BITS} bits)")
  return value << shift


def _limited(function: Callable[..., Any], arity: int) -> Callable[..., Any]:
  """`function` refusing more than `arity` arguments and int arguments above MAX_COMBINATORIAL_N."""

  @functools.wraps(function)
  def limited(*args):
    if len(args) > arity:  # Checked first: the loop below is sandbox code the timer cannot stop.
      raise TypeError(f"math.{function.__name__}() takes at most {arity} arguments")
    if any(isinstance(a, int) and a > MAX_COMBINATORIAL_N for a in args):
      raise OverflowError(f"math.{function.__name__} arguments above {MAX_COMBINATORIAL_N} are "
                          "not allowed in the sandbox")
    return function(*args)

  return limited


# ---------------------------------------------------------------------------------------------
# `type` and classes.


class MetaclassStandIn(Sealed):
  """What a cell gets for `type` and for any other metaclass (`type(SomeClass)`, `type(type)`).

  A real metaclass builds classes from a dict (`type(type(1))('X', (), {'__getattr__': f})` defined
  withheld dunders, `__instancecheck__` metaclasses fooled `match`), and its methods change shared
  state (`ABCMeta.register`). The stand-in keeps what honest code uses: `type(x)` with one argument
  (on the stand-in for `type`), `isinstance(c, type)`, `issubclass`, `__name__` and `repr`. It
  cannot be called to build a class, subclassed or copied.
  """
  __slots__ = ("_metaclass",)
  _immutable = True

  def __init__(self, token: object, metaclass: type):
    if token is not _CONSTRUCT or not (isinstance(metaclass, type) and issubclass(metaclass, type)):
      raise TypeError("metaclass stand-ins cannot be created in the sandbox")
    object.__setattr__(self, "_metaclass", metaclass)

  def __call__(self, *args, **kwargs):
    metaclass = _field(self, "_metaclass")
    if metaclass is type and len(args) == 1 and not kwargs:
      return class_of(args[0])
    if metaclass is type:
      raise PermissionError("type() with 3 arguments is not available in the sandbox; define "
                            "classes with a class statement")
    raise PermissionError(f"metaclass {metaclass.__name__} is not available in the sandbox; define "
                          "classes with a class statement")

  def __instancecheck__(self, obj: object) -> bool:
    if type(obj) is MetaclassStandIn:
      obj = _field(obj, "_metaclass")
    return isinstance(obj, _field(self, "_metaclass"))

  def __subclasscheck__(self, cls: object) -> bool:
    if type(cls) is MetaclassStandIn:
      cls = _field(cls, "_metaclass")
    return issubclass(cls, _field(self, "_metaclass"))

  def __mro_entries__(self, bases):
    raise TypeError("metaclasses are not available in the sandbox; subclass ordinary classes")

  def __getattr__(self, name: str):
    if name in restrictions.SAFE_DUNDER_ATTRIBUTES:  # __name__, __qualname__, __doc__
      return getattr(_field(self, "_metaclass"), name)
    raise AttributeError(f"{_field(self, '_metaclass').__name__} has no attribute {name!r} in the "
                         "sandbox")

  def __repr__(self):
    return repr(_field(self, "_metaclass"))


_METACLASS_STAND_INS: dict[type, MetaclassStandIn] = {}


def _metaclass_stand_in(metaclass: type) -> MetaclassStandIn:
  """The one stand-in for `metaclass` (so `type(type(1)) is type` holds in cells)."""
  stand_in = _METACLASS_STAND_INS.get(metaclass)
  if stand_in is None:
    stand_in = _METACLASS_STAND_INS[metaclass] = MetaclassStandIn(_CONSTRUCT, metaclass)
  return stand_in


TYPE = _metaclass_stand_in(type)  # The cells' builtin `type`.


def class_of(obj: object) -> Any:
  """`type(obj)` as cells see it: the class, or a stand-in when the class is a metaclass."""
  if type(obj) is MetaclassStandIn:
    return TYPE  # Like type(type) is type.
  cls = type(obj)
  return _metaclass_stand_in(cls) if issubclass(cls, type) else cls


# Metaclasses of the classes cells may create: plain classes, and subclasses of the ABCs behind the
# `typing` stand-ins (typing.Sequence, typing.Mapping, ...).
ALLOWED_METACLASSES = (type, abc.ABCMeta)


@library_code
def _check_match_args(cls: type) -> None:
  """Refuses a class whose `__match_args__` (own or inherited) breaks the attribute rules.

  A class pattern `case C(a)` reads `getattr(subject, C.__match_args__[0])` with the real getattr;
  a namedtuple field or a NamedTuple annotation named `gi_frame` would read frames that way.
  """
  match_args = getattr(cls, "__match_args__", ())
  if type(match_args) is not tuple:
    raise TypeError(f"class {cls.__name__}: __match_args__ must be a tuple of attribute names")
  for name in match_args:
    refusal = restrictions.attribute_refusal(name)
    if refusal is not None:
      raise TypeError(f"class {cls.__name__}: field {name!r} is not allowed: {refusal}")


@library_code
def checked_build_class(function: Callable[..., Any], name: str, *bases: Any, **keywords: Any):
  """The `__build_class__` behind cells' class statements.

  Checks what the AST rules cannot see: the metaclass the bases bring (only `type` and `ABCMeta`)
  and `__match_args__` inherited from a namedtuple or created by typing.NamedTuple.
  """
  if keywords:
    raise TypeError("class keywords (such as metaclass=) are not allowed in the sandbox")
  for base in bases:
    if isinstance(base, type) and issubclass(base, type):
      raise TypeError("metaclasses are not available in the sandbox; subclass ordinary classes")
  cls = builtins.__build_class__(function, name, *bases)
  if type(cls) not in ALLOWED_METACLASSES:
    raise TypeError(f"class {name}: classes with metaclass {type(cls).__name__} are not available "
                    "in the sandbox")
  _check_match_args(cls)
  return cls


@library_code
def checked_match_class(cls: object, positional: int) -> object:
  """The class of a class pattern with `positional` sub-patterns, once its attribute reads are
  checked: `case C(a, b)` reads `C.__match_args__[:2]` from the subject with the real getattr, so
  those names must pass `restrictions.match_attribute_refusal` (see `_Rewriter.visit_Match`)."""
  if not isinstance(cls, type):
    raise TypeError(f"called match pattern must be a class, not {type(cls).__name__}")
  match_args = getattr(cls, "__match_args__", None)
  if type(match_args) is tuple:  # Otherwise Python itself accepts one sub-pattern or raises.
    for index, name in enumerate(match_args[:positional]):
      refusal = restrictions.match_attribute_refusal(name)
      if refusal is not None:
        raise TypeError(f"match pattern {cls.__name__}(...): positional sub-pattern {index + 1} "
                        f"would read attribute {name!r}: {refusal}")
  return cls


# ---------------------------------------------------------------------------------------------
# namedtuple and typing.NamedTuple: generated attributes follow the attribute rules.


@library_code
def _exact_str(value: object, what: str) -> str:
  """`value` as an exact `str` (a subclass is copied, so none of its methods run later)."""
  if not isinstance(value, str):
    raise TypeError(f"{what} must be str, not {type(value).__name__}")
  return str.__str__(value)


@library_code
def checked_namedtuple(typename: str, field_names: Any, *, rename: bool = False,
                       defaults: Any = None, module: Any = None) -> type:
  """`collections.namedtuple` whose field names (which become attributes and `__match_args__`)
  follow the attribute rules; the class belongs to the cell (`__module__` is the cell's)."""
  if module is not None and module != CELL_MODULE:
    raise TypeError("namedtuple(module=...) is not supported in the sandbox")
  typename = _exact_str(typename, "namedtuple() typename")
  if isinstance(field_names, str):
    names = str.__str__(field_names).replace(",", " ").split()
  else:
    names = [_exact_str(name, "namedtuple() field names")
             for name in itertools.islice(field_names, MAX_NAMEDTUPLE_FIELDS + 1)]
  if len(names) > MAX_NAMEDTUPLE_FIELDS:
    raise ValueError(f"a namedtuple may have at most {MAX_NAMEDTUPLE_FIELDS} fields in the sandbox")
  cls = collections.namedtuple(typename, names, rename=bool(rename), defaults=defaults,
                               module=CELL_MODULE)
  _check_match_args(cls)  # Its __match_args__ are its fields, after `rename`.
  return cls


_NAMEDTUPLE_PROHIBITED = frozenset({"__new__", "__init__", "__slots__", "__getnewargs__", "_fields",
                                    "_field_defaults", "_make", "_replace", "_asdict", "_source"})
_NAMEDTUPLE_SKIPPED = frozenset({"__module__", "__name__", "__annotations__", "__orig_bases__",
                                 "__classcell__"})


class _NamedTupleMeta(type):
  """Builds `class P(typing.NamedTuple): x: int` through `checked_namedtuple` (the real
  typing.NamedTuple passes annotation names straight to collections.namedtuple)."""

  @library_code
  def __new__(metaclass, typename, bases, namespace):
    if bases != (_NamedTupleBase,):
      raise TypeError("a NamedTuple class can only inherit from typing.NamedTuple")
    annotations = dict(namespace.get("__annotations__", {}))
    defaults = []
    for field in annotations:
      if field in namespace:
        defaults.append(namespace[field])
      elif defaults:
        raise TypeError(f"non-default NamedTuple field {field} cannot follow default fields")
    cls = checked_namedtuple(typename, list(annotations), defaults=defaults)
    cls.__annotations__ = annotations
    for key, value in namespace.items():
      if key in _NAMEDTUPLE_PROHIBITED:
        raise AttributeError(f"cannot overwrite NamedTuple attribute {key}")
      if key not in _NAMEDTUPLE_SKIPPED and key not in cls._fields:
        setattr(cls, key, value)
    return cls


_NamedTupleBase = type.__new__(_NamedTupleMeta, "NamedTuple", (), {})


# ---------------------------------------------------------------------------------------------
# typing: inert stand-ins. The real aliases forward attributes to shared ABCs
# (`typing.Sequence.register`) and cache subscriptions process-wide, keyed by the arguments, whose
# `__hash__`/`__eq__` a cell may define.


@library_code
def _type_expression_size(argument: object, depth: int = 0) -> int:
  if type(argument) is TypingStandIn:
    return _field(argument, "_size")
  if type(argument) is list and depth < 2:  # Callable[[int, str], bool]
    return 1 + sum(_type_expression_size(item, depth + 1) for item in argument)
  return 1


@library_code
def _type_repr(argument: object) -> str:
  if argument is Ellipsis:
    return "..."
  if argument is None or argument is type(None):
    return "None"
  if isinstance(argument, type):
    name = argument.__qualname__
    module = argument.__module__
    return name if module in ("builtins", CELL_MODULE) else f"{module}.{name}"
  if type(argument) is list:
    return "[" + ", ".join(_type_repr(item) for item in argument) + "]"
  return repr(argument)


class TypingStandIn(Sealed):
  """A `typing` name (`List`, `Optional[int]`, ...) for annotations, `isinstance` and subclassing.

  Subscripting records the arguments (nothing is hashed or cached); `isinstance`/`issubclass` and
  subclassing use the plain class behind the name (`list`, `collections.abc.Sequence`) when there
  is one. It has no other attributes.
  """
  __slots__ = ("_name", "_origin", "_arguments", "_size")
  _immutable = True

  def __init__(self, token: object, name: str = "", origin: type | None = None,
               arguments: tuple | None = None, size: int = 1):
    if token is not _CONSTRUCT:
      raise TypeError("typing objects cannot be created directly in the sandbox")
    for field, value in (("_name", name), ("_origin", origin), ("_arguments", arguments),
                         ("_size", size)):
      object.__setattr__(self, field, value)

  @library_code
  def __getitem__(self, parameters: Any) -> "TypingStandIn":
    name = _field(self, "_name")
    if _field(self, "_arguments") is not None or name in _UNSUBSCRIPTABLE:
      raise TypeError(f"{self!r} is not subscriptable")
    items = parameters if type(parameters) is tuple else (parameters,)
    if name == "typing.Optional" and len(items) != 1:
      raise TypeError("Optional[t] requires a single type")
    items = tuple(list(item) if isinstance(item, list) else item for item in items)
    size = 1 + sum(_type_expression_size(item) for item in items)
    if size > MAX_TYPE_EXPRESSION_SIZE:
      raise TypeError(f"type expression too large (more than {MAX_TYPE_EXPRESSION_SIZE} parts)")
    return TypingStandIn(_CONSTRUCT, name, _field(self, "_origin"), items, size)

  def __or__(self, other: Any) -> "TypingStandIn":
    return _TYPING_STAND_INS["Union"][self, other]

  def __ror__(self, other: Any) -> "TypingStandIn":
    return _TYPING_STAND_INS["Union"][other, self]

  def _plain_class(self, use: str) -> type:
    if _field(self, "_arguments") is not None:
      raise TypeError(f"subscripted generics cannot be used with {use}")
    origin = _field(self, "_origin")
    if origin is None:
      raise TypeError(f"{_field(self, '_name')} cannot be used with {use}")
    return origin

  def __instancecheck__(self, obj: object) -> bool:
    return isinstance(obj, self._plain_class("isinstance()"))

  def __subclasscheck__(self, cls: object) -> bool:
    return issubclass(cls, self._plain_class("issubclass()"))

  def __mro_entries__(self, bases):
    origin = _field(self, "_origin")
    if origin is None:
      raise TypeError(f"cannot subclass {self!r} in the sandbox")
    return (origin,)

  def __call__(self, *args, **kwargs):
    origin = _field(self, "_origin")
    hint = f"; use {origin.__name__}() instead" if origin is not None else ""
    raise TypeError(f"{_field(self, '_name')} cannot be instantiated{hint}")

  def __getattr__(self, name: str):
    raise AttributeError(f"{_field(self, '_name')} has no attribute {name!r} in the sandbox "
                         "(typing names support subscripts, isinstance() and subclassing)")

  @library_code
  def __repr__(self):
    arguments = _field(self, "_arguments")
    name = _field(self, "_name")
    if arguments is None:
      return name
    return f"{name}[{', '.join(_type_repr(item) for item in arguments)}]"


class NamedTupleStandIn(Sealed):
  """`typing.NamedTuple`: as a base class (`class P(NamedTuple): x: int`) or called
  (`NamedTuple('P', [('x', int)])`); field names follow the attribute rules either way."""
  __slots__ = ()
  _immutable = True

  def __mro_entries__(self, bases):
    return (_NamedTupleBase,)

  @library_code
  def __call__(self, typename: str, fields: Any = None, /, **keyword_fields: Any) -> type:
    if fields is None:
      pairs = list(keyword_fields.items())
    elif keyword_fields:
      raise TypeError("NamedTuple() takes either a list of fields or keyword fields, not both")
    else:
      pairs = []
      for pair in itertools.islice(fields, MAX_NAMEDTUPLE_FIELDS + 1):
        name, annotation = pair
        pairs.append((_exact_str(name, "NamedTuple() field names"), annotation))
    cls = checked_namedtuple(typename, [name for name, _ in pairs])
    cls.__annotations__ = dict(pairs)
    return cls

  def __repr__(self):
    return "typing.NamedTuple"


_UNSUBSCRIPTABLE = frozenset({"typing.Any"})
_TYPING_ORIGINS: dict[str, type | None] = {
    "Any": None, "Callable": collections.abc.Callable, "Dict": dict, "FrozenSet": frozenset,
    "Iterable": collections.abc.Iterable, "Iterator": collections.abc.Iterator, "List": list,
    "Mapping": collections.abc.Mapping, "Optional": None, "Sequence": collections.abc.Sequence,
    "Set": set, "Tuple": tuple, "Union": None, "DefaultDict": collections.defaultdict,
    "Deque": collections.deque, "Generator": collections.abc.Generator,
}
_TYPING_STAND_INS: dict[str, Any] = {
    name: TypingStandIn(_CONSTRUCT, f"typing.{name}", origin)
    for name, origin in _TYPING_ORIGINS.items()
}
_TYPING_STAND_INS["NamedTuple"] = NamedTupleStandIn()


# ---------------------------------------------------------------------------------------------
# copy: plain data, objects of classes the cell defined, and a few library types.
#
# The real module deep-copied a method's `__self__` (`copy.deepcopy(print)` copied the node's
# runtime), handed the caller its memo (which keeps every original alive: live sandbox internals),
# and ran the reduce protocol on any object, so a memo seeded with `{id(cls): SharedClass}` could
# rebuild and patch shared singletons (`re.IGNORECASE`).

_ATOMIC_TYPES = frozenset({
    type(None), type(Ellipsis), type(NotImplemented), bool, int, float, complex, str, bytes, range,
    slice, property, types.BuiltinFunctionType, types.FunctionType, fractions.Fraction,
    decimal.Decimal, type(functools.lru_cache()(len)),
})
_SHALLOW_ATOMIC_TYPES = _ATOMIC_TYPES | {tuple, frozenset}
# Library types copied through their (trusted) reduce protocol, like the classes cells define.
_REDUCIBLE_LIBRARY_TYPES = frozenset({random.Random, functools.partial})


@library_code
def _reducible(x: object) -> bool:
  cls = type(x)
  return (cls.__module__ == CELL_MODULE or cls in _REDUCIBLE_LIBRARY_TYPES
          or (isinstance(x, BaseException) and cls in _EXCEPTION_TYPES))


@library_code
def _copy_refusal(x: object, what: str) -> TypeError:
  return TypeError(f"{what}: cannot copy {type(x).__name__} objects in the sandbox (it copies "
                   "plain data, containers, and objects of classes the cell defined)")


@library_code
class _Copier:
  """One `copy.copy` or `copy.deepcopy` call; the memo is private to it."""

  def __init__(self, deep: bool):
    self.deep = deep
    self.what = "copy.deepcopy" if deep else "copy.copy"
    self.memo: dict[int, tuple[object, object]] = {}  # id -> (original, copy); keeps ids alive

  def copy(self, x: object) -> object:
    cls = type(x)
    if cls in (_ATOMIC_TYPES if self.deep else _SHALLOW_ATOMIC_TYPES) or isinstance(x, type):
      return x
    if isinstance(x, Sealed):
      if cls._immutable:
        return x
      raise TypeError(f"{cls.__name__} objects cannot be copied")
    if isinstance(x, enum.Enum):
      return x
    if cls is types.MethodType:
      if self.deep and _created_by_a_cell(x.__self__):
        return types.MethodType(x.__func__, self.copy(x.__self__))
      return x  # A method of a sandbox or library object is returned as it is.
    if self.deep:
      hit = self.memo.get(id(x))
      if hit is not None:
        return hit[1]
    copier = _CONTAINER_COPIERS.get(cls)
    if copier is not None:
      return copier(self, x)
    if _reducible(x):
      return self._reconstruct(x)
    raise _copy_refusal(x, self.what)

  def _item(self, x: object) -> object:
    return self.copy(x) if self.deep else x

  def _remember(self, x: object, y: object) -> object:
    if self.deep:
      self.memo[id(x)] = (x, y)
    return y

  def copy_list(self, x: list) -> list:
    y = self._remember(x, [])
    y.extend(self._item(item) for item in x)
    return y

  def copy_tuple(self, x: tuple) -> tuple:
    items = [self.copy(item) for item in x]
    hit = self.memo.get(id(x))  # A tuple inside a list inside itself was copied meanwhile.
    if hit is not None:
      return hit[1]
    y = x if all(a is b for a, b in zip(items, x)) else tuple(items)
    return self._remember(x, y)

  def copy_mapping(self, x: dict) -> dict:
    cls = type(x)
    if cls is collections.defaultdict:
      y = collections.defaultdict(self._item(x.default_factory))
    else:
      y = cls()
    self._remember(x, y)
    for key, value in x.items():
      y[self._item(key)] = self._item(value)
    return y

  def copy_set(self, x: set | frozenset) -> set | frozenset:
    return self._remember(x, type(x)(self._item(item) for item in x))

  def copy_deque(self, x: collections.deque) -> collections.deque:
    y = self._remember(x, collections.deque(maxlen=x.maxlen))
    y.extend(self._item(item) for item in x)
    return y

  def copy_chain_map(self, x: collections.ChainMap) -> collections.ChainMap:
    if not self.deep:
      return x.copy()
    return self._remember(x, collections.ChainMap(*[self.copy(m) for m in x.maps]))

  def copy_bytearray(self, x: bytearray) -> bytearray:
    return self._remember(x, bytearray(x))

  def _reconstruct(self, x: object) -> object:
    """`x` rebuilt through its class's reduce protocol (as `copy` does), where every callable must
    build a new instance of `type(x)` and nothing is looked up on the instance itself."""
    cls = type(x)
    reduced = cls.__reduce_ex__(x, 4)
    if type(reduced) is not tuple or not 2 <= len(reduced) <= 5:
      raise _copy_refusal(x, self.what)
    function, arguments, state, list_items, dict_items = reduced + (None,) * (5 - len(reduced))
    if type(arguments) is not tuple:
      raise _copy_refusal(x, self.what)
    if function is copyreg.__newobj__ or function is copyreg.__newobj_ex__:
      allowed = bool(arguments) and arguments[0] is cls
    else:
      allowed = function is cls
    if not allowed:
      raise _copy_refusal(x, self.what)
    if self.deep:
      arguments = self.copy(arguments)
    y = function(*arguments)
    if type(y) is not cls:
      raise _copy_refusal(x, self.what)
    self._remember(x, y)
    if state is not None:
      if self.deep:
        state = self.copy(state)
      set_state = getattr(cls, "__setstate__", None)
      if set_state is not None:
        set_state(y, state)
      else:
        slot_state = None
        if type(state) is tuple and len(state) == 2:
          state, slot_state = state
        if state:
          y.__dict__.update(state)
        if slot_state:
          for key, value in slot_state.items():
            setattr(y, key, value)
    if list_items is not None:
      for item in list_items:
        y.append(self._item(item))
    if dict_items is not None:
      for key, value in dict_items:
        y[self._item(key)] = self._item(value)
    return y


_CONTAINER_COPIERS: dict[type, Callable[[_Copier, Any], Any]] = {
    list: _Copier.copy_list, tuple: _Copier.copy_tuple, dict: _Copier.copy_mapping,
    set: _Copier.copy_set, frozenset: _Copier.copy_set, bytearray: _Copier.copy_bytearray,
    collections.deque: _Copier.copy_deque, collections.Counter: _Copier.copy_mapping,
    collections.OrderedDict: _Copier.copy_mapping, collections.defaultdict: _Copier.copy_mapping,
    collections.ChainMap: _Copier.copy_chain_map,
}


@library_code
def sandbox_copy(x: Any) -> Any:
  """`copy.copy`: a shallow copy of plain data, containers, or an object of a cell's class."""
  return _Copier(deep=False).copy(x)


@library_code
def sandbox_deepcopy(x: Any, memo: Any = None) -> Any:
  """`copy.deepcopy` without the `memo` argument (it would hand the caller every original the copy
  visited) and without copying sandbox or library internals."""
  if memo is not None:
    raise TypeError("copy.deepcopy(x, memo): the memo argument is not supported in the sandbox")
  return _Copier(deep=True).copy(x)


# ---------------------------------------------------------------------------------------------
# re: patterns and matches behind proxies. Cells pass exact str/bytes and int flags to the module,
# so its process-wide caches (`re._cache`, `re._compile_repl`) never hold cell objects; re.DEBUG,
# which prints to the process's stdout, is refused.

_RE_ALLOWED_FLAGS = int(re.IGNORECASE | re.LOCALE | re.MULTILINE | re.DOTALL | re.UNICODE |
                        re.VERBOSE | re.ASCII)


@library_code
def _re_flags(flags: object) -> int:
  if not isinstance(flags, int):
    raise TypeError(f"re flags must be an int (re.IGNORECASE | ...), not {type(flags).__name__}")
  value = int.__int__(flags)
  if value & ~_RE_ALLOWED_FLAGS:
    raise ValueError("re flags other than I, L, M, S, U, X, A (such as re.DEBUG) are not available "
                     "in the sandbox")
  return value


@library_code
def _re_text(value: object, what: str) -> str | bytes:
  if type(value) is str or type(value) is bytes:
    return value
  if isinstance(value, str):
    return str.__str__(value)
  if isinstance(value, bytes):
    return bytes.__bytes__(value)
  raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")


@library_code
def _re_replacement(replacement: object) -> Any:
  if callable(replacement):
    return lambda match: replacement(MatchProxy(match))
  return _re_text(replacement, "the replacement")


@library_code
class PatternProxy(Sealed):
  """A compiled regular expression (`re.compile(...)`), as a cell sees it."""
  __slots__ = ("_pattern",)
  _immutable = True

  def __init__(self, pattern: re.Pattern):
    if type(pattern) is not re.Pattern:
      raise TypeError("patterns come from re.compile()")
    object.__setattr__(self, "_pattern", pattern)

  def search(self, string, pos=0, endpos=sys.maxsize):
    return _match_or_none(_field(self, "_pattern").search(string, pos, endpos))

  def match(self, string, pos=0, endpos=sys.maxsize):
    return _match_or_none(_field(self, "_pattern").match(string, pos, endpos))

  def fullmatch(self, string, pos=0, endpos=sys.maxsize):
    return _match_or_none(_field(self, "_pattern").fullmatch(string, pos, endpos))

  def findall(self, string, pos=0, endpos=sys.maxsize):
    return _field(self, "_pattern").findall(string, pos, endpos)

  def finditer(self, string, pos=0, endpos=sys.maxsize):
    return (MatchProxy(match) for match in _field(self, "_pattern").finditer(string, pos, endpos))

  def split(self, string, maxsplit=0):
    return _field(self, "_pattern").split(string, maxsplit)

  def sub(self, repl, string, count=0):
    return _field(self, "_pattern").sub(_re_replacement(repl), string, count)

  def subn(self, repl, string, count=0):
    return _field(self, "_pattern").subn(_re_replacement(repl), string, count)

  @property
  def pattern(self):
    return _field(self, "_pattern").pattern

  @property
  def flags(self) -> int:
    return _field(self, "_pattern").flags

  @property
  def groups(self) -> int:
    return _field(self, "_pattern").groups

  @property
  def groupindex(self) -> dict:
    return dict(_field(self, "_pattern").groupindex)

  def __eq__(self, other):
    return type(other) is PatternProxy and _field(self, "_pattern") == _field(other, "_pattern")

  def __hash__(self):
    return hash(_field(self, "_pattern"))

  def __repr__(self):
    return repr(_field(self, "_pattern"))


@library_code
class MatchProxy(Sealed):
  """A regular-expression match, as a cell sees it (`.re` is a PatternProxy)."""
  __slots__ = ("_match",)
  _immutable = True

  def __init__(self, match: re.Match):
    if type(match) is not re.Match:
      raise TypeError("matches come from re functions and patterns")
    object.__setattr__(self, "_match", match)

  def group(self, *groups):
    return _field(self, "_match").group(*groups)

  def __getitem__(self, group):
    return _field(self, "_match")[group]

  def groups(self, default=None):
    return _field(self, "_match").groups(default)

  def groupdict(self, default=None):
    return _field(self, "_match").groupdict(default)

  def start(self, group=0):
    return _field(self, "_match").start(group)

  def end(self, group=0):
    return _field(self, "_match").end(group)

  def span(self, group=0):
    return _field(self, "_match").span(group)

  def expand(self, template):
    return _field(self, "_match").expand(_re_text(template, "the template"))

  @property
  def string(self):
    return _field(self, "_match").string

  @property
  def re(self) -> PatternProxy:
    return PatternProxy(_field(self, "_match").re)

  @property
  def pos(self) -> int:
    return _field(self, "_match").pos

  @property
  def endpos(self) -> int:
    return _field(self, "_match").endpos

  @property
  def lastindex(self):
    return _field(self, "_match").lastindex

  @property
  def lastgroup(self):
    return _field(self, "_match").lastgroup

  @property
  def regs(self):
    return _field(self, "_match").regs

  def __bool__(self):
    return True

  def __repr__(self):
    return repr(_field(self, "_match"))


@library_code
def _match_or_none(match: re.Match | None) -> MatchProxy | None:
  return None if match is None else MatchProxy(match)


@library_code
def re_compile(pattern, flags=0) -> PatternProxy:
  if type(pattern) is PatternProxy:
    if flags:
      raise ValueError("cannot process flags argument with a compiled pattern")
    return pattern
  return PatternProxy(re.compile(_re_text(pattern, "the pattern"), _re_flags(flags)))


@library_code
def re_search(pattern, string, flags=0):
  return re_compile(pattern, flags).search(string)


@library_code
def re_match(pattern, string, flags=0):
  return re_compile(pattern, flags).match(string)


@library_code
def re_fullmatch(pattern, string, flags=0):
  return re_compile(pattern, flags).fullmatch(string)


@library_code
def re_findall(pattern, string, flags=0):
  return re_compile(pattern, flags).findall(string)


@library_code
def re_finditer(pattern, string, flags=0):
  return re_compile(pattern, flags).finditer(string)


@library_code
def re_split(pattern, string, maxsplit=0, flags=0):
  return re_compile(pattern, flags).split(string, maxsplit)


@library_code
def re_sub(pattern, repl, string, count=0, flags=0):
  return re_compile(pattern, flags).sub(repl, string, count)


@library_code
def re_subn(pattern, repl, string, count=0, flags=0):
  return re_compile(pattern, flags).subn(repl, string, count)


@library_code
def re_escape(pattern):
  return re.escape(_re_text(pattern, "the pattern"))


class _Template(string.Template):
  """`string.Template` whose compiled `pattern` is a PatternProxy, also in cells' subclasses."""

  @library_code
  def __init_subclass__(cls):
    _re_flags(cls.flags)  # Before string.Template compiles with them (no re.DEBUG).
    super().__init_subclass__()
    compiled = cls.pattern
    cls.pattern = PatternProxy(re.compile(str.__str__(compiled.pattern), compiled.flags))


_Template.pattern = PatternProxy(_Template.pattern)
_Template.__name__ = _Template.__qualname__ = "Template"
_Template.__module__ = "string"


# ---------------------------------------------------------------------------------------------
# Exception groups.


def exception_in_group(group: BaseExceptionGroup, kinds: tuple[type, ...]) -> BaseException | None:
  """The first exception of one of `kinds` inside `group`, nested groups included (or None).

  Reads `exceptions` through the C descriptor, so a group subclass cannot run code here.
  """
  stack: list[BaseException] = [group]
  while stack:
    error = stack.pop()
    if isinstance(error, kinds):
      return error
    if isinstance(error, BaseExceptionGroup):
      stack.extend(reversed(BaseExceptionGroup.exceptions.__get__(error)))
  return None


# ---------------------------------------------------------------------------------------------
# Modules.


def _public(module: types.ModuleType, names: typing.Iterable[str]) -> dict[str, Any]:
  return {name: getattr(module, name) for name in names}


def _math_members() -> dict[str, Any]:
  members = {name: getattr(math, name) for name in dir(math) if not name.startswith("_")}
  for name, arity in (("factorial", 1), ("comb", 2), ("perm", 2)):
    members[name] = _limited(members[name], arity)
  return members


def _re_members() -> dict[str, Any]:
  members = _public(re, ["error", "IGNORECASE", "I", "MULTILINE", "M", "DOTALL", "S", "VERBOSE",
                         "X", "ASCII", "A"])
  members.update({
      "compile": re_compile, "search": re_search, "match": re_match, "fullmatch": re_fullmatch,
      "findall": re_findall, "finditer": re_finditer, "split": re_split, "sub": re_sub,
      "subn": re_subn, "escape": re_escape, "Pattern": PatternProxy, "Match": MatchProxy,
  })
  return members


_SHARED_MODULES: dict[str, ModuleProxy] = {
    "math": ModuleProxy("math", _math_members()),
    "json": ModuleProxy("json", _public(json, ["dumps", "loads", "JSONDecodeError"])),
    "re": ModuleProxy("re", _re_members()),
    "collections": ModuleProxy("collections", {
        **_public(collections, ["Counter", "defaultdict", "deque", "OrderedDict", "ChainMap"]),
        "namedtuple": checked_namedtuple}),
    "itertools": ModuleProxy("itertools", {
        name: getattr(itertools, name) for name in dir(itertools) if not name.startswith("_")}),
    "functools": ModuleProxy("functools", _public(functools, [
        "reduce", "partial", "lru_cache", "cache", "cmp_to_key"])),
    "string": ModuleProxy("string", {
        **_public(string, [
            "ascii_letters", "ascii_lowercase", "ascii_uppercase", "digits", "hexdigits",
            "octdigits", "punctuation", "printable", "whitespace", "capwords"]),
        "Template": _Template}),
    "statistics": ModuleProxy("statistics", _public(statistics, [
        "mean", "fmean", "geometric_mean", "harmonic_mean", "median", "median_low", "median_high",
        "mode", "multimode", "pstdev", "pvariance", "stdev", "variance", "quantiles",
        "StatisticsError"])),
    "heapq": ModuleProxy("heapq", _public(heapq, [
        "heappush", "heappop", "heapify", "heappushpop", "heapreplace", "nlargest", "nsmallest",
        "merge"])),
    "bisect": ModuleProxy("bisect", _public(bisect, [
        "bisect", "bisect_left", "bisect_right", "insort", "insort_left", "insort_right"])),
    "copy": ModuleProxy("copy", {"copy": sandbox_copy, "deepcopy": sandbox_deepcopy,
                                 "Error": copy.Error}),
    "typing": ModuleProxy("typing", _TYPING_STAND_INS),
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
# Exception classes a cell can name or meet (copied through their reduce protocol).
_EXCEPTION_TYPES = frozenset(_EXCEPTIONS + (
    ImportError, ModuleNotFoundError, OSError, SyntaxError, IndentationError, json.JSONDecodeError,
    statistics.StatisticsError, re.error, copy.Error))
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
      "setattr": checked_setattr, "delattr": checked_delattr, "type": TYPE,
      "pow": checked_pow, "NotImplemented": NotImplemented, "Ellipsis": Ellipsis,
      "__build_class__": checked_build_class, "__import__": import_function,
      "__name__": CELL_MODULE, "__rao_show__": show, "__rao_pow__": checked_pow,
      "__rao_lshift__": checked_lshift, "__rao_getattr__": checked_getattr,
      "__rao_setattr__": checked_setattr, "__rao_delattr__": checked_delattr,
      "__rao_match_class__": checked_match_class,
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
