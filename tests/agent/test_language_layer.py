"""Defence in depth at the language layer (issue 14, part 2).

For each class of escape the audit found, several attack cells of our own, each failing with a clear
error or a harmless result, with checks that nothing leaked (frames, modules, module globals, real
metaclasses, the node's runtime) and that nothing another node sees was patched; and honest cells of
the same kind that must keep working. Cells run in-process (`Node` builds a namespace the way
`cell.NodeRuntime` does), except where the scheduler or the CPU timer is part of the test.
"""
import abc
import ast
import builtins
import collections
import collections.abc
import gc
import re
import subprocess
import sys
import textwrap
import time
import types

import pytest

from rao_jax.agent.interpreter import awaitables
from rao_jax.agent.interpreter import cell
from rao_jax.agent.interpreter import restrictions
from rao_jax.agent.interpreter import sandbox_builtins
from rao_jax.agent.interpreter import time_limit
from rao_jax.agent.interpreter import values
from rao_jax.agent.interpreter.messages import CellStatus


class Node:
  """One node's namespace as `cell.NodeRuntime` builds it (restricted builtins, the importer, its
  own `random` and `asyncio`), without a host. `print` is a bound method, as the runtime's is."""

  def __init__(self):
    self._output: list[str] = []
    self._random = None
    table = sandbox_builtins.make_builtins(self.print, self.show,
                                           sandbox_builtins.make_importer(self.module))
    self.namespace = {"__builtins__": table, "__name__": sandbox_builtins.CELL_MODULE,
                      "asyncio": awaitables.ASYNCIO}

  def print(self, *args, sep=" ", end="\n"):
    self._output.append(sep.join(str(a) for a in args) + end)

  def show(self, value):
    if value is not None:
      self._output.append(repr(value) + "\n")

  def module(self, name):
    if name == "asyncio":
      return awaitables.ASYNCIO
    if name == "random":
      if self._random is None:
        self._random = sandbox_builtins.random_module(0)
      return self._random
    return None

  def run(self, code: str) -> str:
    """Runs a cell; returns what it printed (errors propagate)."""
    self._output = []
    exec(restrictions.compile_cell(code), self.namespace)  # noqa: S102 - checked cell code.
    return "".join(self._output)


def refused(code: str, error: type[BaseException], fragment: str, node: Node | None = None) -> Node:
  """Asserts that `code` fails with `error` whose message contains `fragment`; returns the node."""
  node = node or Node()
  with pytest.raises(error) as caught:
    node.run(code)
  assert fragment in str(caught.value), str(caught.value)
  assert_nothing_leaked(node)
  return node


_MACHINERY = (types.FrameType, types.CodeType, types.TracebackType, types.ModuleType, Node,
              cell.NodeRuntime)


def _parts(value, depth=0):
  yield value
  if depth < 2 and type(value) in (list, tuple, set, frozenset):
    for item in value:
      yield from _parts(item, depth + 1)
  elif depth < 2 and type(value) is dict:
    for item in value.values():
      yield from _parts(item, depth + 1)


def assert_nothing_leaked(node: Node) -> None:
  """No value the cells stored (two levels into containers) is host machinery: frames, code,
  modules, module globals or builtins dicts, real metaclasses, the node itself."""
  for name, value in node.namespace.items():
    if name == "__builtins__":
      continue
    for part in _parts(value):
      assert not isinstance(part, _MACHINERY), (name, part)
      assert not (isinstance(part, type) and issubclass(part, type)), (name, part)
      if type(part) is dict:
        assert "__builtins__" not in part and part is not builtins.__dict__, name
      assert part is not node.namespace["__builtins__"], name


_COUNTER_MOST_COMMON = collections.Counter.most_common


def assert_shared_state_intact() -> None:
  """What every node of a process shares (ABC registries and flags, enum members, the re caches,
  library classes) is as it was."""
  assert not isinstance({}, collections.abc.Sequence)
  assert not issubclass(types.GeneratorType, collections.abc.Sequence)
  assert not issubclass(dict, collections.abc.Sequence)
  assert not dict.__flags__ & (1 << 5)  # Py_TPFLAGS_SEQUENCE, which `match` reads.
  assert not collections.Counter.__flags__ & (1 << 5)
  assert re.IGNORECASE.value == 2 and re.IGNORECASE.name == "IGNORECASE"
  assert all(key[0] in (str, bytes) and type(key[2]) is int for key in re._cache)
  assert re.compile("(a)(b)").sub(r"\2\1", "ab") == "ba"
  assert collections.Counter.most_common is _COUNTER_MOST_COMMON
  assert Node().run("import typing, re\nprint(isinstance({}, typing.Sequence), "
                    "re.sub('(a)(b)', r'\\2\\1', 'ab'), re.I.value)") == "False ba 2\n"


# ---------------------------------------------------------------------------------------------
# 1. `type(x)` handed out the real `type`: its three-argument form and metaclasses.


@pytest.mark.parametrize("code, error, fragment", [
    ("X = type('X', (), {'__getattr__': lambda s, n: n})", PermissionError, "3 arguments"),
    ("X = type(type(1))('X', (), {'__getattr__': lambda s, n: n})", PermissionError, "3 arguments"),
    ("class C:\n  pass\nD = type(C)('D', (C,), {'__reduce_ex__': print})", PermissionError,
     "3 arguments"),
    ("M = type(type(1))('M', (type(type(1)),), {'__instancecheck__': lambda c, o: True})",
     PermissionError, "3 arguments"),
    ("class M(type):\n  pass", TypeError, "metaclasses are not available"),
    ("class M(type(type(0))):\n  pass", TypeError, "metaclasses are not available"),
    ("import typing\nclass S(typing.Sequence):\n  pass\nABCMeta = type(S)\n"
     "ABCMeta('X', (), {})", PermissionError, "metaclass ABCMeta is not available"),
    ("import typing\nclass S(typing.Sequence):\n  pass\ntype(S).register(S, dict)",
     AttributeError, "register"),
    ("import re\nEnumType = type(type(re.I))\nEnumType('E', (), {})", PermissionError,
     "not available"),
    ("class M(type(int)):\n  def __instancecheck__(self, other):\n    return True",
     restrictions.CellRejected, "__instancecheck__"),
    ("super(type, int)", TypeError, "must be a type"),
    ("T = type(type)\nT2 = type(T)\nT2('X', (), {})", PermissionError, "3 arguments"),
])
def test_type_never_hands_out_a_metaclass(code, error, fragment):
  refused(code, error, fragment)


def test_type_keeps_its_ordinary_uses():
  node = Node()
  assert node.run(
      "class A:\n"
      "  def clone(self):\n"
      "    return type(self)()\n"
      "a = A()\n"
      "print(type(1) is int, type('s').__name__, type(a) is A, type(a.clone()) is A)\n"
      "print(type(int) is type, type(type) is type, type(A).__name__, repr(type))\n"
      "print(isinstance(int, type), isinstance(3, type), isinstance(A, (int, type)),\n"
      "      issubclass(bool, int), issubclass(type, type), list(map(type, [1, 'a'])))\n"
      "import typing\n"
      "class S(typing.Sequence):\n"
      "  def __init__(self, items):\n"
      "    self.items = items\n"
      "  def __getitem__(self, i):\n"
      "    return self.items[i]\n"
      "  def __len__(self):\n"
      "    return len(self.items)\n"
      "print(type(S), isinstance(S, type), list(S([1, 2])), S([3]).index(3))\n") == (
          "True str True True\n"
          "True True type <class 'type'>\n"
          "True False True True True [<class 'int'>, <class 'str'>]\n"
          "<class 'abc.ABCMeta'> True [1, 2] 0\n")
  assert_nothing_leaked(node)


# ---------------------------------------------------------------------------------------------
# 2. Class patterns read `__match_args__` attributes with the real getattr; namedtuple fields
#    skipped the attribute rules; an ABC's `register` made any object match.


@pytest.mark.parametrize("code, error, fragment", [
    ("from collections import namedtuple\nN = namedtuple('N', ['gi_frame'])", TypeError,
     "'gi_frame'"),
    ("from collections import namedtuple\nN = namedtuple('N', 'a f_back')", TypeError, "'f_back'"),
    ("from collections import namedtuple\nN = namedtuple('N', 'tb_frame, co_code')", TypeError,
     "'tb_frame'"),
    ("from collections import namedtuple\nN = namedtuple('N', ['mro'])", TypeError, "'mro'"),
    ("from collections import namedtuple\nN = namedtuple('N', ['ok', 'def'], rename=True)",
     TypeError, "'_1'"),
    ("from collections import namedtuple\nN = namedtuple('N', ['x'], module='builtins')",
     TypeError, "module"),
    ("import collections, itertools\n"
     "N = collections.namedtuple('N', ('f%d' % i for i in itertools.count()))", ValueError,
     "at most 1000"),
    ("import typing\nclass P(typing.NamedTuple):\n  gi_frame: int", TypeError, "'gi_frame'"),
    ("import typing\nclass P(typing.NamedTuple):\n  cr_frame: int = 0", TypeError, "'cr_frame'"),
    ("import typing\nP = typing.NamedTuple('P', [('f_globals', int)])", TypeError, "'f_globals'"),
    ("import typing\nP = typing.NamedTuple('P', f_locals=int)", TypeError, "'f_locals'"),
    ("import typing\nclass P(typing.NamedTuple):\n  x: int\n  def _make(self):\n    pass",
     AttributeError, "_make"),
    ("import dataclasses", restrictions.CellRejected, "'dataclasses'"),
])
def test_generated_attributes_follow_the_attribute_rules(code, error, fragment):
  refused(code, error, fragment)


def test_namedtuple_field_names_are_taken_as_exact_strings():
  # A str subclass whose methods lie to the check: the sandbox copies the text first.
  node = Node()
  assert node.run(
      "from collections import namedtuple\n"
      "class Liar(str):\n"
      "  def split(self, *args):\n"
      "    return ['gi_frame']\n"
      "  def replace(self, *args):\n"
      "    return Liar('gi_frame')\n"
      "N = namedtuple(Liar('N'), Liar('a b'))\n"
      "print(N._fields, type(N._fields[0]) is str)\n") == "('a', 'b') True\n"


@pytest.mark.parametrize("code, error, fragment", [
    # The audited chain: a namedtuple's `__match_args__` plus an ABC that registers the
    # generator type, so `case A(frame)` reads `gen.gi_frame`.
    ("from collections import namedtuple\nimport typing\nN = namedtuple('N', ['a'])\n"
     "class A(N, typing.Sequence):\n  pass\nA.register(type(x for x in []))", AttributeError,
     "ABC.register is not available"),
    ("import typing\nclass A(typing.Sequence):\n  pass\nr = getattr(A, 'register')",
     AttributeError, "ABC.register"),
    ("import typing\nclass A(typing.Sequence):\n  pass\n'{0.register}'.format(A)", AttributeError,
     "ABC.register"),
    ("match '{0.__class__}':\n  case str(format=f):\n    f(1)", restrictions.CellRejected,
     "'format'"),
    ("match 'x':\n  case str(format_map=f):\n    pass", restrictions.CellRejected, "'format_map'"),
    ("import typing\nclass A(typing.Sequence):\n  pass\nmatch A:\n  case object(register=r):\n"
     "    pass", restrictions.CellRejected, "'register'"),
    ("match 1:\n  case object(__class__=c):\n    pass", restrictions.CellRejected, "'__class__'"),
    ("g = (x for x in [1])\nmatch g:\n  case object(gi_frame=f):\n    pass",
     restrictions.CellRejected, "'gi_frame'"),
    ("import string\nmatch 1:\n  case string.format():\n    pass", restrictions.CellRejected,
     "'format'"),
    ("match 1:\n  case x.register:\n    pass", restrictions.CellRejected, "'register'"),
    ("match 1:\n  case type():\n    pass", TypeError, "must be a type"),
])
def test_match_patterns_cannot_read_what_attributes_cannot(code, error, fragment):
  refused(code, error, fragment)
  assert_shared_state_intact()


class _Evil:
  """A class a cell should never be able to make (stands for a future hole in class creation)."""
  __match_args__ = ("gi_frame",)


class _EvilABC(abc.ABC):
  """Likewise: an ABC whose registry accepts generators, with frame-reading match arguments."""
  __match_args__ = ("gi_frame", "f_back")


_EvilABC.register(types.GeneratorType)


@pytest.mark.parametrize("pattern", ["_Evil(f)", "_EvilABC(f)", "[_EvilABC(f)]",
                                     "_Evil(f) | _EvilABC(f)", "_EvilABC(f) if f"])
def test_class_patterns_are_checked_when_they_match(pattern):
  # Defence in depth: even a class with frame-reading `__match_args__` only reads them through
  # the attribute rules when a positional pattern uses it.
  node = Node()
  node.namespace.update(_Evil=_Evil, _EvilABC=_EvilABC)
  subject = "[g]" if "[" in pattern else "g"
  code = f"g = (x for x in [1])\nmatch {subject}:\n  case {pattern}:\n    f = 1"
  with pytest.raises(TypeError, match="would read attribute 'gi_frame'"):
    node.run(code)
  assert "f" not in node.namespace
  assert_nothing_leaked(node)
  # Patterns that read no positional attribute still work with such classes.
  assert node.run("match 1:\n  case _Evil():\n    print('no')\n  case _:\n    print('other')") == (
      "other\n")


def test_honest_match_statements_keep_working():
  node = Node()
  assert node.run(
      "def kind(x):\n"
      "  match x:\n"
      "    case {'action': 'craft', 'item': str(item), **rest}:\n"
      "      return ('craft', item, rest)\n"
      "    case [1, *others]:\n"
      "      return ('list', others)\n"
      "    case str(s) if s:\n"
      "      return ('str', s)\n"
      "    case int(n) | float(n):\n"
      "      return ('number', n)\n"
      "    case (a, b):\n"
      "      return ('pair', a, b)\n"
      "    case _:\n"
      "      return 'other'\n"
      "for v in [{'action': 'craft', 'item': 'stick', 'n': 2}, [1, 2], 'hi', 3, 2.5, (3, 4),\n"
      "          None]:\n"
      "  print(kind(v))\n") == (
          "('craft', 'stick', {'n': 2})\n('list', [2])\n('str', 'hi')\n('number', 3)\n"
          "('number', 2.5)\n('pair', 3, 4)\nother\n")
  assert node.run(
      "from collections import namedtuple\n"
      "import typing\n"
      "Point = namedtuple('Point', 'x y')\n"
      "class Item(typing.NamedTuple):\n"
      "  name: str\n"
      "  count: int = 1\n"
      "class Box:\n"
      "  def __init__(self, content):\n"
      "    self.content = content\n"
      "def describe(v):\n"
      "  match v:\n"
      "    case Point(0, y):\n"
      "      return f'on the y axis at {y}'\n"
      "    case Point(x=x, y=0):\n"
      "      return f'on the x axis at {x}'\n"
      "    case [Item(name, n), *_] if n > 1:\n"
      "      return f'{n} x {name} first'\n"
      "    case Box(content=Item(name)):\n"
      "      return f'a box of {name}'\n"
      "    case Box():\n"
      "      return 'a box'\n"
      "  return 'unknown'\n"
      "class Shelf:\n"
      "  match Item('plank', 3):\n"
      "    case Item(label, amount):\n"
      "      summary = f'{amount} {label}'\n"
      "for v in [Point(0, 5), Point(2, 0), [Item('log', 4)], Box(Item('key')), Box(7), 9]:\n"
      "  print(describe(v))\n"
      "print(Shelf.summary)\n") == (
          "on the y axis at 5\non the x axis at 2\n4 x log first\na box of key\na box\nunknown\n"
          "3 plank\n")
  assert_nothing_leaked(node)


def test_honest_namedtuples_keep_working():
  node = Node()
  assert node.run(
      "from collections import namedtuple\n"
      "import typing\n"
      "P = namedtuple('P', 'x y', defaults=[0])\n"
      "p = P(1)._replace(y=5)\n"
      "P.extra = 'mine'\n"
      "Q = typing.NamedTuple('Q', [('a', int), ('b', typing.List[str])])\n"
      "class R(typing.NamedTuple):\n"
      "  name: str\n"
      "  tags: typing.Optional[typing.List[str]] = None\n"
      "  def label(self):\n"
      "    return self.name.upper()\n"
      "r = R('r')\n"
      "print(p, p._asdict(), P._fields, P._make([3, 4]), P.extra)\n"
      "print(Q(1, ['s']), r, r.label(), r._replace(tags=['t']), type(r).__name__)\n") == (
          "P(x=1, y=5) {'x': 1, 'y': 5} ('x', 'y') P(x=3, y=4) mine\n"
          "Q(a=1, b=['s']) R(name='r', tags=None) R R(name='r', tags=['t']) R\n")


# ---------------------------------------------------------------------------------------------
# 3 and 4. `copy`: methods, the memo, and the reduce protocol on shared objects; registries,
#    typing and re caches shared by every node of the process.


@pytest.mark.parametrize("code, error, fragment", [
    ("import copy\nm = {}\ncopy.deepcopy([print], m)", TypeError, "memo"),
    ("import copy\ncopy.deepcopy([1], {})", TypeError, "memo"),
    # The memo seeded so that a copy of a cell object rebuilds a shared enum member and patches it.
    ("import copy, re\nclass A(int):\n  pass\na = A(2)\na.value = 99\n"
     "copy.deepcopy(a, {id(A): type(re.I)})", TypeError, "memo"),
    ("import copy\ncopy.copy(finish)", TypeError, "cannot be copied"),
    ("import copy\ncopy.deepcopy({'tools': [finish]})", TypeError, "cannot be copied"),
    ("import copy, json\ncopy.deepcopy(json)", TypeError, "cannot be copied"),
    ("import copy\ncopy.deepcopy(x for x in [])", TypeError, "cannot copy generator"),
    ("import copy\nasync def f():\n  pass\nc = f()\ntry:\n  copy.copy(c)\nfinally:\n  c.close()",
     TypeError, "cannot copy coroutine"),
    ("import copy, functools\ncopy.deepcopy(functools.cmp_to_key(len))", TypeError,
     "cannot copy"),
])
def test_copy_refuses_the_memo_and_sandbox_internals(code, error, fragment):
  node = Node()
  node.namespace["finish"] = cell._Finish(None)
  refused(code, error, fragment, node)
  assert_shared_state_intact()


def test_copy_hands_back_methods_of_sandbox_objects_without_copying_them():
  node = Node()
  runtime_before = vars(node).copy()
  assert node.run(
      "import copy, random, re\n"
      "same = [copy.deepcopy(print) is print, copy.copy(print) is print,\n"
      "        copy.deepcopy(random.choice) is random.choice,\n"
      "        copy.copy(re.compile) is re.compile,\n"
      "        copy.deepcopy([].append) is not None]\n"
      "print(same)\n") == "[True, True, True, True, True]\n"
  assert vars(node).keys() == runtime_before.keys()
  assert_nothing_leaked(node)


def test_copy_of_honest_data_and_cell_objects():
  node = Node()
  assert node.run(
      "import copy, random\n"
      "from collections import Counter, defaultdict, deque, OrderedDict, namedtuple\n"
      "P = namedtuple('P', 'x y')\n"
      "class Inventory:\n"
      "  def __init__(self, items):\n"
      "    self.items = items\n"
      "class Bag(dict):\n"
      "  pass\n"
      "inv = Inventory({'log': 2})\n"
      "inv.me = inv\n"
      "bag = Bag(a=[1])\n"
      "bag.note = 'n'\n"
      "state = {'grid': [[0, 1], [2, 3]], 'p': P(1, [2]), 'c': Counter('abb'),\n"
      "         'dd': defaultdict(list, {1: [2]}), 'dq': deque([[1]], maxlen=3),\n"
      "         'od': OrderedDict(z=1), 't': (1, [2]), 's': {1, 2}, 'inv': inv, 'bag': bag,\n"
      "         'err': ValueError('x'), 'group': ExceptionGroup('g', [KeyError('k')]),\n"
      "         'rng': random.Random(3), 'f': len, 'cls': Inventory}\n"
      "copied = copy.deepcopy(state)\n"
      "print(copied['grid'] == state['grid'], copied['grid'][0] is not state['grid'][0])\n"
      "print(copied['p'], copied['p'][1] is not state['p'][1], copied['c'], copied['dd'][1],\n"
      "      copied['dq'], copied['dq'].maxlen, copied['od'], copied['t'], copied['s'])\n"
      "print(copied['inv'] is not inv, copied['inv'].me is copied['inv'], copied['inv'].items,\n"
      "      copied['bag'], copied['bag'].note, type(copied['bag']).__name__)\n"
      "print(repr(copied['err']), repr(copied['group']),\n"
      "      copied['rng'].random() == random.Random(3).random(),\n"
      "      copied['f'] is len, copied['cls'] is Inventory)\n"
      "shallow = copy.copy(state)\n"
      "print(shallow['grid'] is state['grid'], copy.copy(inv).items is inv.items,\n"
      "      copy.copy([1, [2]]), copy.copy((1, 2)), copy.copy(bag).note)\n") == (
          "True True\n"
          "P(x=1, y=[2]) True Counter({'b': 2, 'a': 1}) [2] deque([[1]], maxlen=3) 3 "
          "OrderedDict([('z', 1)]) (1, [2]) {1, 2}\n"
          "True True {'log': 2} {'a': [1]} n Bag\n"
          "ValueError('x') ExceptionGroup('g', [KeyError('k')]) True True True\n"
          "True True [1, [2]] (1, 2) n\n")
  assert_nothing_leaked(node)


@pytest.mark.parametrize("code", [
    "import typing\ntyping.Sequence.register(dict)",
    "import typing\ntyping.Mapping.register(list)",
    "import typing\ngetattr(typing.Iterable, 'register')(int)",
    "import typing\nclass S(typing.Sequence):\n  pass\nS.register(dict)",
    "import typing\nclass S(typing.Sequence):\n  pass\nclass T(S):\n  pass\nT.register(dict)",
    "import typing\nclass S(typing.Sequence):\n  def hook(self):\n    return super(S, S).register\n"
    "S.hook(None)",
    # A Fraction handed out by statistics (its class is an ABC): Fraction.register(dict).
    "import statistics\nseen = []\nclass I(int):\n  def __init__(self, value):\n"
    "    seen.append(value)\nstatistics.mean([I(1), I(3)])\ntype(seen[0]).register(dict)",
])
def test_abc_registries_cannot_be_changed(code):
  with pytest.raises(AttributeError, match="register"):
    Node().run(code)
  assert_shared_state_intact()


_HOSTILE_TEXT = (
    "hits = []\n"
    "class S(str):\n"
    "  def __hash__(self):\n"
    "    hits.append('hash')\n"
    "    return hash(str(self))\n"
    "  def __eq__(self, other):\n"
    "    hits.append('eq')\n"
    "    return True\n"
    "  def __getitem__(self, index):\n"
    "    hits.append('getitem')\n"
    "    return '2'\n"
    "class I(int):\n"
    "  def __hash__(self):\n"
    "    hits.append('hash')\n"
    "    return 0\n"
    "  def __eq__(self, other):\n"
    "    hits.append('eq')\n"
    "    return True\n")


@pytest.mark.parametrize("attack, expected", [
    ("re.compile(S('(a)'), I(0)).pattern", "'(a)'"),
    ("re.sub('(a)(b)', S(r'\\2\\1'), 'ab')", "'ba'"),
    ("re.compile('(a)(b)').sub(S(r'\\2\\1'), 'ab')", "'ba'"),
    ("re.compile('(a)(b)').subn(S(r'\\2\\1'), 'ab')", "('ba', 1)"),
    ("re.match('(a)(b)', 'ab').expand(S(r'\\2'))", "'b'"),
    ("re.match('(a)', 'a').re.sub(S(r'<\\1>'), 'a')", "'<a>'"),
    ("string.Template.pattern.sub(S(r'\\1'), '$$')", "'$'"),
    ("re.search(S('b'), 'abc', I(re.I)).span()", "(1, 2)"),
    ("typing.List[S('x')]", "typing.List['x']"),
    ("typing.Dict[I(1), S('y')]", "typing.Dict[1, 'y']"),
    ("typing.Optional[S('z')]", "typing.Optional['z']"),
])
def test_cell_objects_never_become_keys_of_shared_caches(attack, expected):
  # A str/int subclass whose __hash__/__eq__ collide with another node's cache key would hand
  # that node this node's entry; the re and typing stand-ins pass exact values instead.
  node = Node()
  assert node.run(f"import re, string, typing\n{_HOSTILE_TEXT}{attack}\n") == f"{expected}\n"
  assert node.namespace["hits"] == [], node.namespace["hits"]
  assert_shared_state_intact()


@pytest.mark.parametrize("code, error, fragment", [
    ("import re\nre.compile('a', 128)", ValueError, "re.DEBUG"),  # Prints to the process stdout.
    ("import re\nre.compile('a', re.I | 1)", ValueError, "not available"),
    ("import string\nclass T(string.Template):\n  flags = 128", ValueError, "re.DEBUG"),
    ("import re\nre.compile(['a'])", TypeError, "must be str or bytes"),
    ("import re\nre.compile('a', 'x')", TypeError, "flags must be an int"),
    ("import re\nclass P(re.Pattern):\n  pass", TypeError, "cannot be subclassed"),
    ("import re\nre.Pattern(1)", TypeError, "re.compile"),
    ("import re\nre.compile('(')", re.error, "missing )"),
    ("import re\nre.compile('a').scanner", AttributeError, "scanner"),
    ("import typing\ntyping.List(1)", TypeError, "use list() instead"),
    ("import typing\nisinstance([], typing.List[int])", TypeError, "subscripted generics"),
    ("import typing\nisinstance(1, typing.Any)", TypeError, "typing.Any"),
    ("import typing\nclass X(typing.Union):\n  pass", TypeError, "cannot subclass"),
    ("import typing\ntype(typing.List)('typing.Evil', int)", TypeError, "created directly"),
    ("import typing\nt = typing.Tuple[(int,) * 20000]", TypeError, "too large"),
])
def test_re_and_typing_stand_ins_refuse_clearly(code, error, fragment):
  refused(code, error, fragment)


def test_honest_re_typing_and_string_keep_working():
  node = Node()
  assert node.run(
      "import re, string, typing\n"
      "from typing import Any, Callable, Dict, List, Optional, Tuple, Union\n"
      "p = re.compile(r'(?P<item>\\w+) x(?P<n>\\d+)', re.I)\n"
      "m = p.search('Craft: plank X4')\n"
      "print(m.group('item'), m['n'], m.groupdict(), m.span(), m.start(2), bool(m), m.re == p)\n"
      "print(p.findall('a x1 b x2'), [x.group(1) for x in p.finditer('a x1 b x2')],\n"
      "      p.sub(lambda m: m.group('n'), 'a x1'), re.split(r',\\s*', 'a, b,c'),\n"
      "      re.fullmatch('a+', 'aaa') is not None, re.escape('a.b'), isinstance(m, re.Match),\n"
      "      isinstance(p, re.Pattern), p.pattern, p.groups, p.groupindex, re.match('x', 'y'))\n"
      "def plan(goal: str, budget: Optional[int] = None) -> Dict[str, List[int]]:\n"
      "  return {goal: [budget or 0]}\n"
      "print(plan('log'), List[int], Dict[str, Tuple[int, ...]], Union[int, None],\n"
      "      Callable[[int], str], Any, int | List[str], isinstance([], List),\n"
      "      isinstance({}, typing.Mapping), issubclass(list, typing.Sequence))\n"
      "class Stack(List[int]):\n"
      "  def top(self):\n"
      "    return self[-1]\n"
      "t = string.Template('$who made ${what}s')\n"
      "class Percent(string.Template):\n"
      "  delimiter = '%'\n"
      "print(Stack([1, 2]).top(), t.substitute(who='tim', what='plank'),\n"
      "      Percent('%x!').safe_substitute(x=1), t.get_identifiers(),\n"
      "      string.capwords('a b'))\n") == (
          "plank 4 {'item': 'plank', 'n': '4'} (7, 15) 14 True True\n"
          "[('a', '1'), ('b', '2')] ['a', 'b'] 1 ['a', 'b', 'c'] True a\\.b True True "
          "(?P<item>\\w+) x(?P<n>\\d+) 2 {'item': 1, 'n': 2} None\n"
          "{'log': [0]} typing.List[int] typing.Dict[str, typing.Tuple[int, ...]] "
          "typing.Union[int, None] typing.Callable[[int], str] typing.Any "
          "typing.Union[int, typing.List[str]] True True True\n"
          "2 tim made planks 1! ['who', 'what'] A B\n")
  assert_nothing_leaked(node)


def test_attribute_errors_do_not_carry_wrapped_objects():
  # AttributeError.obj is the object whose lookup failed: a proxy that forwarded lookups would hand
  # out what it wraps.
  node = Node()
  node.run("import re, typing\nleaks = []\n"
           "for thing in [re.compile('a'), re.match('a', 'a'), typing.Sequence, typing.List[int], "
           "type, type(type(re.I))]:\n"
           "  try:\n"
           "    thing.missing_attribute\n"
           "  except AttributeError as error:\n"
           "    leaks.append(error.obj is thing)\n")
  assert node.namespace["leaks"] == [True] * 6
  assert_nothing_leaked(node)


def test_format_fields_are_checked_when_format_is_reached_through_super():
  # A pre-existing hole closed on the way: `super(S, s).format` was the real str.format.
  for code in ["class S(str):\n  pass\nsuper(S, S('{0.__class__}')).format(1)",
               "class S(str):\n  def f(self):\n    return super().format(1)\n"
               "S('{0.__class__}').f()",
               "class S(str):\n  pass\nsuper(S, S).format('{0.__class__}', 1)",
               "class S(str):\n  pass\nsuper(S, S('{x.__class__}')).format_map({'x': 1})"]:
    refused(code, AttributeError, "'__class__'")
  assert Node().run("class S(str):\n  def f(self):\n    return super().format(1)\n"
                    "print(S('{0}!').f())") == "1!\n"


# ---------------------------------------------------------------------------------------------
# 6. Exception groups.


@pytest.mark.parametrize("code", [
    "try:\n  pass\nexcept* ValueError:\n  pass",
    "try:\n  finish(1)\nexcept* (ValueError, TypeError) as group:\n  pass",
    "def f():\n  try:\n    raise ExceptionGroup('g', [ValueError()])\n  except* ValueError:\n"
    "    finish(1)",
    "async def f():\n  try:\n    await asyncio.sleep(0)\n  except* Exception:\n    pass",
])
def test_except_star_is_refused(code):
  with pytest.raises(restrictions.CellRejected, match=r"except\*"):
    restrictions.prepare_cell(code)


class _Host:
  """`cell.NodeHost` for runtime tests: one tool, no children."""

  def call_tool(self, name, args, kwargs):
    return f"{name} ok"

  def launch(self, args, kwargs):
    return "Error: no children in this test"


def _runtime(time_limit_s=0.3) -> cell.NodeRuntime:
  return cell.NodeRuntime(0, _Host(), variables={}, tool_names=["echo"], delegation=True,
                          max_depth=2, max_output_chars=4000, time_limit_s=time_limit_s)


@pytest.fixture(scope="module")
def timer():
  return time_limit.CpuTimeLimit()


def _activate(timer, node, code, seconds=0.3):
  """A cell activation the way the node process runs one: under the CPU limit."""
  try:
    with timer.limit(seconds):
      return node.run_cell(code)
  except time_limit.CellTimeout:
    return node.timeout_outcome()


def test_honest_exception_groups_work_and_their_members_are_shown(timer):
  node = _runtime()
  outcome = _activate(timer, node,
                      "try:\n  raise ExceptionGroup('bad', [ValueError(1), TypeError(2)])\n"
                      "except ExceptionGroup as group:\n"
                      "  match_, rest = group.split(ValueError)\n"
                      "  print(group.exceptions, match_.exceptions, rest.exceptions,\n"
                      "        group.subgroup(lambda e: isinstance(e, TypeError)).exceptions)")
  assert outcome.text == (
      "(ValueError(1), TypeError(2)) (ValueError(1),) (TypeError(2),) (TypeError(2),)\n")
  outcome = _activate(timer, node, "raise ExceptionGroup('3 items failed', [KeyError('log'), "
                      "ValueError('no plank'), ExceptionGroup('inner', [ValueError()])])")
  assert outcome.status is CellStatus.ERROR
  assert outcome.text.endswith("ExceptionGroup: 3 items failed (3 sub-exceptions)\n"
                               "  [1] KeyError: 'log'\n  [2] ValueError: no plank\n"
                               "  [3] ExceptionGroup: inner (1 sub-exception)"), outcome.text


def test_hostile_exception_groups_cost_bounded_time(timer):
  node = _runtime()
  code = ("class E(Exception):\n  def __str__(self):\n    while True:\n      pass\n"
          "class G(ExceptionGroup):\n  def __str__(self):\n    while True:\n      pass\n"
          "raise G('g', [E() for _ in range(1000)])")
  start = time.process_time()
  outcome = _activate(timer, node, code, seconds=0.2)
  assert time.process_time() - start < 2.0
  assert outcome.status is CellStatus.ERROR
  assert outcome.text.count("<exception message unavailable>") == 1 + cell.MAX_TRACEBACK_LINES
  assert "and 995 more" in outcome.text


def _unchecked_compile(code):
  """Compiles a cell without the AST rules (a hole in them, for the defence-in-depth tests)."""
  return compile(code, restrictions.CELL_FILENAME, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                 dont_inherit=True)


@pytest.mark.parametrize("body, status, fragment", [
    ("finish('done')", CellStatus.FINISHED, ""),
    ("while True:\n      pass", CellStatus.ERROR, "TimeoutError"),
])
def test_sandbox_signals_wrapped_in_groups_still_end_the_cell(timer, monkeypatch, body, status,
                                                               fragment):
  # Should `except*` get past the AST rules, a finish or time-limit signal it wraps in a
  # BaseExceptionGroup (with the unhandled TypeError) still ends the cell, and nothing escapes.
  monkeypatch.setattr(restrictions, "compile_cell", _unchecked_compile)
  node = _runtime()
  code = ("async def task():\n  try:\n    raise ExceptionGroup('g', [ValueError(), TypeError()])\n"
          f"  except* ValueError:\n    {body}\nawait asyncio.gather(task())")
  outcome = _activate(timer, node, code, seconds=0.2)
  assert outcome.status is status and fragment in outcome.text, outcome


# ---------------------------------------------------------------------------------------------
# 7. CPU spent in sandbox helpers: interruptible (library code) or bounded before the work.


@pytest.mark.parametrize("code", [
    "import copy\nx = [[i] for i in range(10**5)]\nwhile True:\n  copy.deepcopy(x)",
    "import copy\ncopy.deepcopy([[i] for i in range(10**5)] * 50)",
    "s = '{0}' * (3 * 10**6)\ns.format(1)",
    "s = '{x}' * 10**6\nwhile True:\n  str.format_map(s, {'x': 1})",
    "import re\nre.match('(a*)*b', 'a' * 40)",
    "import re\nre.compile('(a*)*b').sub(lambda m: '', 'a' * 40)",
    "import re\nlist(re.finditer('(a*)*b', 'a' * 40))",
    "from collections import namedtuple\nwhile True:\n"
    "  namedtuple('N', ['f%d' % i for i in range(999)])",
    "import typing\nt = typing.Tuple[(int,) * 9000]\nwhile True:\n  repr(t)",
    "import string\nt = string.Template('$x' * 10**6)\nwhile True:\n  t.substitute(x=1)",
])
def test_long_helper_work_is_interrupted_by_the_cpu_limit(timer, code):
  node = _runtime()
  gc.disable()  # as in node processes: no automatic collections over this big test process
  try:
    start = time.process_time()
    outcome = _activate(timer, node, code, seconds=0.2)
    assert time.process_time() - start < 3.0
  finally:
    gc.enable()
  assert outcome.status is CellStatus.ERROR and "TimeoutError" in outcome.text, outcome.text


@pytest.mark.parametrize("code, fragment", [
    ("import math\nmath.factorial(*[1] * 10**6)", "at most 1 arguments"),
    ("import math\nmath.comb(*[1] * 10**6)", "at most 2 arguments"),
    ("await asyncio.gather(*[asyncio.sleep(0)] * 10**7)", "at most 10000"),
    ("pow(3, (1 << 200000) - 1, (1 << 200000) + 1)", "too costly"),
    ("x = 2 ** (10 ** 100)", "too large"),
    ("finish('x' * 10**8)", "too large"),
    ("echo(['x' * 10**8])", "too large"),
])
def test_helper_work_proportional_to_arguments_is_bounded_first(timer, code, fragment):
  node = _runtime()
  start = time.process_time()
  outcome = _activate(timer, node, code, seconds=2.0)
  assert time.process_time() - start < 1.5
  assert outcome.status is CellStatus.ERROR and fragment in outcome.text, outcome.text


def test_json_like_refuses_huge_strings_before_serialising():
  text = "x" * 10**8
  start = time.process_time()
  with pytest.raises(values.NotPlainData, match="too large"):
    values.json_like({"a": [text]}, 1000)
  assert time.process_time() - start < 0.05


def test_library_helpers_are_marked_interruptible():
  marked = [sandbox_builtins.sandbox_deepcopy, sandbox_builtins.sandbox_copy,
            sandbox_builtins.checked_namedtuple, sandbox_builtins.checked_build_class,
            sandbox_builtins.checked_match_class, sandbox_builtins.re_match,
            sandbox_builtins.PatternProxy.finditer, sandbox_builtins.BoundFormat.__call__,
            sandbox_builtins._Copier._reconstruct]
  for function in marked:
    code = function.__code__
    nested = [c for c in code.co_consts if isinstance(c, types.CodeType)]
    assert {code.co_filename, *(c.co_filename for c in nested)} == {
        sandbox_builtins.LIBRARY_FILENAME}, function


# ---------------------------------------------------------------------------------------------
# 8. Non-ASCII identifiers: the parser's lazy imports happen before the privilege drop.


def test_non_ascii_identifiers_and_named_escapes_work():
  assert Node().run("café = 'crème'\nnaïve = café.upper()\nprint(naïve, '\\N{BULLET}')") == (
      "CRÈME •\n")


_AFTER_PRIVILEGE_DROP = textwrap.dedent("""
    import sys
    from rao_jax.agent.interpreter import restrictions
    class NoImports:
      def find_spec(self, name, path=None, target=None):
        raise ImportError(f"import of {name} after the privilege drop")
    sys.meta_path.insert(0, NoImports())
    namespace = {}
    exec(restrictions.compile_cell("café = '\\\\N{BULLET}' * 2\\nñ = len(café)"), namespace)
    print(namespace["ñ"], "unicodedata" in sys.modules)
""")


def test_the_parser_needs_no_import_after_the_privilege_drop():
  result = subprocess.run([sys.executable, "-c", _AFTER_PRIVILEGE_DROP], capture_output=True,
                          text=True, timeout=60)
  assert result.stdout == "2 True\n", result.stderr


def test_unexpected_parser_failures_are_cell_errors(monkeypatch):
  def failing_parse(*args, **kwargs):
    raise ImportError("unicodedata is not available")

  monkeypatch.setattr(ast, "parse", failing_parse)
  with pytest.raises(restrictions.CellRejected, match="could not be parsed: ImportError"):
    restrictions.prepare_cell("x = 1  # unique to this test")
