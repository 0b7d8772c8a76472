"""AST validation and rewriting of cells, and the runtime attribute/format/arithmetic checks."""
import pytest

from rao_jax.agent.interpreter import restrictions
from rao_jax.agent.interpreter import sandbox_builtins


@pytest.mark.parametrize("code, fragment", [
    ("__import__('os')", "'__import__'"),
    ("x = __builtins__", "'__builtins__'"),
    ("().__class__", "'__class__'"),
    ("f.__globals__", "'__globals__'"),
    ("x._private", "'_private'"),
    ("g.gi_frame", "'gi_frame'"),
    ("frame.f_back", "'f_back'"),
    ("tb.tb_frame", "'tb_frame'"),
    ("c.co_code", "'co_code'"),
    ("Exception.mro()", "'mro'"),
    ("import os", "'os'"),
    ("import os.path", "'os.path'"),
    ("from sys import modules", "'sys'"),
    ("from json import *", "import *"),
    ("from json import _default_encoder", "'_default_encoder'"),
    ("from . import x", "None"),
    ("class A(metaclass=M): pass", "metaclass"),
    ("class A:\n  def __getattr__(self, n): pass", "'__getattr__'"),
    ("class A:\n  def __del__(self): pass", "'__del__'"),
    ("class A:\n  def __exit__(self, *a): return True", "'__exit__'"),
    ("def __init__(): pass", "'__init__'"),
    ("def f(__x): pass", "'__x'"),
    ("lambda __x: 1", "'__x'"),
    ("global __builtins__", "'__builtins__'"),
    ("while True:\n  try:\n    pass\n  finally:\n    continue", "'continue' inside 'finally'"),
    ("def f():\n  try:\n    pass\n  finally:\n    return 1", "'return' inside 'finally'"),
    ("match x:\n  case object(__class__=c): pass", "'__class__'"),
    ("try:\n  pass\nexcept Exception as __e:\n  pass", "'__e'"),
    ("a.x, b = 1, 2", "one at a time"),
    ("for a.x in range(3): pass", "one at a time"),
    ("a[0] **= 2", "plain names"),
    ("try:\n  pass\nexcept* ValueError:\n  pass", "except*"),
    ("match s:\n  case str(format=f): pass", "'format'"),
    ("match s:\n  case object(register=r): pass", "'register'"),
    ("match s:\n  case m.register(): pass", "'register'"),
    ("match s:\n  case m.format_map: pass", "'format_map'"),
])
def test_rejected_cells_name_the_rule(code, fragment):
  with pytest.raises(restrictions.CellRejected) as error:
    restrictions.prepare_cell(code)
  assert fragment in str(error.value)


@pytest.mark.parametrize("code", [
    "import math, json as j\nfrom collections import Counter, namedtuple",
    "class P:\n  def __init__(self, x):\n    super().__init__()\n    self.x = x\n"
    "  def __repr__(self):\n    return f'P({self.x})'",
    "P = namedtuple('P', 'a b')\np = P(1, 2)._replace(a=3)._asdict()",
    "name = type(1).__name__",
    "while True:\n  try:\n    break\n  finally:\n    for i in range(2):\n      continue",
    "x = 2 ** 10\nx **= 2\ny = 1 << 4",
    "s = '{} {x}'.format(1, x=2)",
    "r = await launch_subagent('a')",
    "def f(): global g; g = 1",
    "match p:\n  case P(a, b) | Q(a, b) if a:\n    pass\n  case [R(c), *_]:\n    pass",
    "registry.register(x)\nregistry.register = None\ncafé = 1",
])
def test_ordinary_cells_are_accepted(code):
  restrictions.prepare_cell(code)


def test_bare_except_becomes_except_exception():
  tree = restrictions.prepare_cell("try:\n  pass\nexcept:\n  pass")
  handler = tree.body[0].handlers[0]
  assert handler.type.id == "Exception"


def test_guarded_attribute_reads_go_through_checked_getattr():
  tree = restrictions.prepare_cell("r = x.register\nf = s.format")
  for statement, name in zip(tree.body, ["register", "format"]):
    assert statement.value.func.id == "__rao_getattr__"
    assert statement.value.args[1].value == name


def test_class_patterns_with_positional_parts_are_checked_at_match_time():
  tree = restrictions.prepare_cell(
      "match p:\n  case P(a, [Q(b)]):\n    pass\n  case R(k=1):\n    pass")
  guard_case, checked_case, keyword_case = tree.body[0].cases
  checks = guard_case.guard.operand.elts
  assert [check.value.func.id for check in checks] == ["__rao_match_class__"] * 2
  assert [(check.value.args[0].id, check.value.args[1].value) for check in checks] == [
      ("P", 2), ("Q", 1)]
  assert checked_case.pattern.cls.id == checks[0].target.id
  assert keyword_case.pattern.cls.id == "R"  # No positional parts, nothing to check.


def test_trailing_expression_is_shown():
  tree = restrictions.prepare_cell("x = 1\nx + 1")
  assert tree.body[-1].value.func.id == "__rao_show__"


def test_too_long_and_too_deep_cells_are_rejected():
  with pytest.raises(restrictions.CellRejected, match="too long"):
    restrictions.prepare_cell("x = 1\n" * 50_000)
  with pytest.raises((restrictions.CellRejected, SyntaxError, MemoryError)):
    restrictions.compile_cell("x = " + "(" * 5000 + "1" + ")" * 5000)
  with pytest.raises(restrictions.CellRejected, match="str"):
    restrictions.prepare_cell(b"print(1)")


def test_compiled_cells_are_cached():
  assert restrictions.compile_cell("y = 41 + 1") is restrictions.compile_cell("y = 41 + 1")


class _Thing:
  secret = "s"


def test_checked_getattr_refuses_private_and_introspection():
  with pytest.raises(AttributeError, match="private"):
    sandbox_builtins.checked_getattr(_Thing(), "__class__")
  with pytest.raises(AttributeError, match="introspection"):
    sandbox_builtins.checked_getattr((x for x in []), "gi_frame")
  with pytest.raises(AttributeError):
    sandbox_builtins.checked_getattr(_Thing(), 3)
  assert sandbox_builtins.checked_getattr(_Thing(), "secret") == "s"
  assert sandbox_builtins.checked_getattr(_Thing(), "missing", 7) == 7
  assert not sandbox_builtins.checked_hasattr(_Thing(), "__dict__")


def test_format_fields_are_checked_for_str_instances_and_the_class():
  fmt = sandbox_builtins.checked_getattr("{0.__class__}", "format")
  with pytest.raises(AttributeError, match="__class__"):
    fmt(1)
  unbound = sandbox_builtins.checked_getattr(str, "format")
  with pytest.raises(AttributeError, match="gi_frame"):
    unbound("{0.gi_frame}", (x for x in []))
  fmt_map = sandbox_builtins.checked_getattr("{a[0]}-{b.real}", "format_map")
  assert fmt_map({"a": [5], "b": 2}) == "5-2"
  assert sandbox_builtins.checked_getattr("{:>4}|{x}", "format")(7, x="y") == "   7|y"


def test_pow_and_shift_refuse_huge_integers_only():
  assert sandbox_builtins.checked_pow(2, 10) == 1024
  assert sandbox_builtins.checked_pow(2.0, 0.5) == pytest.approx(2 ** 0.5)
  assert sandbox_builtins.checked_pow(3, 10**12, 7) == pow(3, 10**12, 7)
  with pytest.raises(OverflowError, match="too large"):
    sandbox_builtins.checked_pow(10, 10**10)
  with pytest.raises(OverflowError):
    sandbox_builtins.checked_lshift(1, 10**9)
  assert sandbox_builtins.checked_lshift(1, 10) == 1024


def test_checked_getattr_refuses_abc_register_only():
  import collections.abc

  class Registry:
    def register(self, item):
      return item

  with pytest.raises(AttributeError, match="ABC.register"):
    sandbox_builtins.checked_getattr(collections.abc.Sequence, "register")
  assert sandbox_builtins.checked_getattr(Registry(), "register")(5) == 5


def test_setattr_only_on_what_cells_created():
  with pytest.raises(AttributeError, match="did not create"):
    sandbox_builtins.checked_setattr(_Thing, "secret", "x")
  assert _Thing.secret == "s"


def test_module_proxies_are_read_only_and_limited():
  importer = sandbox_builtins.make_importer(lambda name: None)
  math = importer("math")
  assert math.sqrt(9) == 3
  with pytest.raises(AttributeError, match="read-only"):
    math.sqrt = None
  with pytest.raises(AttributeError, match="no attribute"):
    importer("json").decoder
  with pytest.raises(ImportError):
    importer("os")
  with pytest.raises(OverflowError):
    math.factorial(10**6)
  re = importer("re")
  with pytest.raises(AttributeError):
    re.enum
