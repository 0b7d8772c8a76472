"""Language-level restrictions on model-written cells: AST validation and rewriting.

A cell is parsed, checked against the rules below and rewritten before it is compiled:

* no name starting with `__` (dunders, `__builtins__`, `__import__`, ...);
* no attribute starting with `_` (except namedtuple's `_asdict`/`_replace`/`_fields`/`_make`, a few
  harmless dunders such as `__name__`, and `super().__init__`-style calls of allowed dunder
  methods), and none of the introspection attributes that lead from a generator, coroutine, frame,
  traceback or code object to host state (`gi_frame`, `f_back`, `tb_frame`, `co_code`, ...), nor
  `mro`;
* imports only of allow-listed modules (`import m`, `import m as n`, `from m import name`);
* classes without keywords (no `metaclass=`), defining only allow-listed dunder methods;
* no `return`/`break`/`continue` inside `finally` (they would swallow the time-limit exception);
* no `except*` (it wraps whatever the body raises, the sandbox's own BaseExceptions included, in
  exception groups that nothing outside the cell expects);
* match-class keyword patterns follow the attribute rules, and may not name the guarded attributes
  below (a pattern reads attributes with the real `getattr`).

Rewrites: a bare `except:` becomes `except Exception:` (the time limit derives from BaseException);
`x ** y` and `x << y` go through size-checked helpers; reads of the guarded attributes
(`.format`/`.format_map`, whose fields read attributes, and `.register`, which on an ABC would
change `isinstance` for every node) go through the checked `getattr`; the class of a class pattern
with positional sub-patterns (`case C(a, b)`) goes through a check of the attribute names it would
read (`C.__match_args__`); a trailing bare expression is shown REPL-style. The helpers are named
`__rao_*__`, which user code cannot name.
"""
from __future__ import annotations

import ast
import copy
import functools
# The parser imports `unicodedata` the first time it meets a non-ASCII identifier or a `\N{...}`
# escape; import it now, before a node process drops its privileges (after which an import may fail).
import unicodedata  # noqa: F401

CELL_FILENAME = "<cell>"
MAX_CELL_CHARS = 100_000

ALLOWED_MODULES = frozenset({
    "asyncio", "bisect", "collections", "copy", "functools", "heapq", "itertools", "json", "math",
    "random", "re", "statistics", "string", "typing",
})

# Dunder methods a cell's classes may define (no __del__, __getattr__, __exit__, __reduce__, ...).
ALLOWED_DUNDER_METHODS = frozenset({
    "__init__", "__repr__", "__str__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__",
    "__hash__", "__len__", "__iter__", "__next__", "__contains__", "__getitem__", "__setitem__",
    "__delitem__", "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
    "__truediv__", "__floordiv__", "__mod__", "__neg__", "__pos__", "__abs__", "__bool__",
    "__call__", "__int__", "__float__", "__index__",
})
SAFE_DUNDER_ATTRIBUTES = frozenset({"__name__", "__qualname__", "__doc__"})
NAMEDTUPLE_ATTRIBUTES = frozenset({"_asdict", "_replace", "_fields", "_make"})
# Attributes that walk from live objects to interpreter internals (frames, globals, code).
INTROSPECTION_ATTRIBUTES = frozenset({
    "gi_frame", "gi_code", "gi_yieldfrom", "gi_running", "gi_suspended",
    "cr_frame", "cr_code", "cr_await", "cr_origin", "cr_running", "cr_suspended",
    "ag_frame", "ag_code", "ag_await", "ag_running",
    "f_back", "f_builtins", "f_code", "f_globals", "f_locals", "f_lasti", "f_lineno", "f_trace",
    "f_trace_lines", "f_trace_opcodes",
    "tb_frame", "tb_next", "tb_lasti", "tb_lineno",
    "co_code", "co_consts", "co_names", "co_varnames", "co_filename", "co_name", "co_flags",
    "co_lines", "co_positions", "co_qualname", "co_freevars", "co_cellvars", "co_lnotab",
    "mro",
})
FORMAT_ATTRIBUTES = frozenset({"format", "format_map"})
# Attributes whose reads need a look at the object (see `sandbox_builtins.checked_getattr`): the
# rewriter routes `x.format` etc. through it, and match patterns may not read them.
GUARDED_ATTRIBUTES = FORMAT_ATTRIBUTES | {"register"}


class CellRejected(Exception):
  """A cell broke a sandbox rule; the message says which and where."""


def attribute_refusal(name: object) -> str | None:
  """Why reading attribute `name` is refused, or None if it is allowed."""
  if type(name) is not str:
    return "attribute name must be a str"
  if name in SAFE_DUNDER_ATTRIBUTES or name in NAMEDTUPLE_ATTRIBUTES:
    return None
  if name.startswith("_"):
    return f"access to attribute {name!r} is not allowed (names starting with '_' are private)"
  if name in INTROSPECTION_ATTRIBUTES:
    return f"access to attribute {name!r} is not allowed (interpreter introspection)"
  return None


def match_attribute_refusal(name: object) -> str | None:
  """Why a match class pattern may not read attribute `name` (None if it may).

  Patterns read attributes with the real `getattr`, so the guarded attributes, which are only safe
  through `sandbox_builtins.checked_getattr`, are refused as well.
  """
  refusal = attribute_refusal(name)
  if refusal is None and name in GUARDED_ATTRIBUTES:
    refusal = (f"a match pattern may not read attribute {name!r}; read it as `subject.{name}` in "
               "the case body instead")
  return refusal


def _is_super_call(node: ast.expr) -> bool:
  return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
          and node.func.id == "super")


def _jump_in_finally(statements: list[ast.stmt]) -> ast.stmt | None:
  """The first return/break/continue that would leave a `finally` block, if any."""

  def visit(node: ast.AST, in_loop: bool) -> ast.stmt | None:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
      return None
    if isinstance(node, ast.Return):
      return node
    if isinstance(node, (ast.Break, ast.Continue)) and not in_loop:
      return node
    if isinstance(node, (ast.For, ast.AsyncFor, ast.While)):
      # break/continue in a loop's body stay inside it; its `else` clause is outside.
      parts = [(child, True) for child in node.body] + [(child, in_loop) for child in node.orelse]
    else:
      parts = [(child, in_loop) for child in ast.iter_child_nodes(node)]
    for child, child_in_loop in parts:
      found = visit(child, child_in_loop)
      if found is not None:
        return found
    return None

  for statement in statements:
    found = visit(statement, False)
    if found is not None:
      return found
  return None


def _reject(node: ast.AST, message: str):
  line = getattr(node, "lineno", None)
  raise CellRejected(f"{message} (line {line})" if line else message)


def _check_names(node: ast.AST, names) -> None:
  for name in names:
    if name.startswith("__"):
      _reject(node, f"name {name!r} is not allowed (names starting with '__' are reserved)")


def _check_pattern_name(node: ast.AST, dotted: ast.expr) -> None:
  """Refuses guarded attributes in a pattern's dotted name (`case m.format():`): the rewriter can
  only route attribute reads through `checked_getattr` where an arbitrary expression may stand."""
  while type(dotted) is ast.Attribute:
    if dotted.attr in GUARDED_ATTRIBUTES:
      _reject(node, f"attribute {dotted.attr!r} may not be used in a match pattern")
    dotted = dotted.value


def _argument_names(arguments: ast.arguments) -> list[str]:
  every = arguments.posonlyargs + arguments.args + arguments.kwonlyargs
  return [a.arg for a in every] + [a.arg for a in (arguments.vararg, arguments.kwarg) if a]


_ALLOWED_MODULE_LIST = ", ".join(sorted(ALLOWED_MODULES))
_REWRITTEN_BINOPS = (ast.Pow, ast.LShift)


def _check(tree: ast.Module) -> bool:
  """Raises CellRejected at the first node that breaks a rule; returns whether `_Rewriter` must run.

  One iterative pass over the tree (parents before children); it is the hot path of every cell.
  """
  needs_rewrite = False
  method_defs: set[int] = set()  # ids of functions defined directly in a class body
  handled_targets: set[int] = set()  # ids of attribute targets the rewriter turns into calls
  stack: list[ast.AST] = [tree]
  while stack:
    node = stack.pop()
    kind = type(node)
    if kind is ast.Name:
      if node.id.startswith("__"):
        _reject(node, f"name {node.id!r} is not allowed (names starting with '__' are reserved)")
      continue
    if kind is ast.Attribute:
      refusal = attribute_refusal(node.attr)
      if refusal is not None and not (
          _is_super_call(node.value) and node.attr in ALLOWED_DUNDER_METHODS):
        _reject(node, refusal)
      if type(node.ctx) is not ast.Load:
        if id(node) not in handled_targets:
          _reject(node, "assign or delete attributes one at a time (`obj.attr = value`, "
                  "`del obj.attr`)")
        needs_rewrite = True
      elif node.attr in GUARDED_ATTRIBUTES:
        needs_rewrite = True
    elif kind is ast.BinOp:
      needs_rewrite = needs_rewrite or isinstance(node.op, _REWRITTEN_BINOPS)
    elif kind is ast.Assign:
      if len(node.targets) == 1 and type(node.targets[0]) is ast.Attribute:
        handled_targets.add(id(node.targets[0]))
    elif kind is ast.AnnAssign or kind is ast.AugAssign:
      if type(node.target) is ast.Attribute:
        handled_targets.add(id(node.target))
      elif kind is ast.AugAssign and isinstance(node.op, _REWRITTEN_BINOPS):
        if type(node.target) is not ast.Name:
          _reject(node, "augmented '**='/'<<=' is only allowed on plain names")
        needs_rewrite = True
    elif kind is ast.Delete:
      handled_targets.update(id(t) for t in node.targets if type(t) is ast.Attribute)
    elif kind is ast.Import:
      for alias in node.names:
        if alias.name not in ALLOWED_MODULES:
          _reject(node, f"import of {alias.name!r} is not allowed; allowed modules: "
                  f"{_ALLOWED_MODULE_LIST}")
        if alias.asname:
          _check_names(node, [alias.asname])
    elif kind is ast.ImportFrom:
      if node.level or node.module not in ALLOWED_MODULES:
        _reject(node, f"import from {node.module!r} is not allowed; allowed modules: "
                f"{_ALLOWED_MODULE_LIST}")
      for alias in node.names:
        if alias.name == "*":
          _reject(node, "'from ... import *' is not allowed")
        refusal = attribute_refusal(alias.name)
        if refusal is not None:
          _reject(node, refusal)
        _check_names(node, [alias.asname or alias.name])
    elif kind is ast.FunctionDef or kind is ast.AsyncFunctionDef:
      if node.name.startswith("__") and not (
          id(node) in method_defs and node.name in ALLOWED_DUNDER_METHODS):
        _reject(node, f"defining {node.name!r} is not allowed")
      _check_names(node, _argument_names(node.args))
    elif kind is ast.Lambda:
      _check_names(node, _argument_names(node.args))
    elif kind is ast.ClassDef:
      _check_names(node, [node.name])
      if node.keywords:
        _reject(node, "class keywords (such as metaclass=) are not allowed")
      method_defs.update(id(s) for s in node.body
                         if type(s) in (ast.FunctionDef, ast.AsyncFunctionDef))
    elif kind is ast.TryStar:
      _reject(node, "'except*' is not supported in the sandbox; catch groups with `except "
              "ExceptionGroup as group:` and look at `group.exceptions`")
    elif kind is ast.Try:
      jump = _jump_in_finally(node.finalbody)
      if jump is not None:
        _reject(jump, f"'{type(jump).__name__.lower()}' inside 'finally' is not allowed")
    elif kind is ast.ExceptHandler:
      if node.name:
        _check_names(node, [node.name])
      needs_rewrite = needs_rewrite or node.type is None
    elif kind is ast.Global or kind is ast.Nonlocal:
      _check_names(node, node.names)
    elif kind is ast.MatchClass:
      _check_pattern_name(node, node.cls)
      for name in node.kwd_attrs:
        refusal = match_attribute_refusal(name)
        if refusal is not None:
          _reject(node, refusal)
      needs_rewrite = needs_rewrite or bool(node.patterns)
    elif kind is ast.MatchValue:
      _check_pattern_name(node, node.value)
    elif kind is ast.MatchAs or kind is ast.MatchStar:
      if node.name:
        _check_names(node, [node.name])
    elif kind is ast.MatchMapping:
      if node.rest:
        _check_names(node, [node.rest])
    for field in node._fields:
      value = getattr(node, field)
      if type(value) is list:
        stack.extend(v for v in value if isinstance(v, ast.AST))
      elif isinstance(value, ast.AST):
        stack.append(value)
  return needs_rewrite


def _helper_call(name: str, *args: ast.expr) -> ast.Call:
  return ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=list(args), keywords=[])


class _Rewriter(ast.NodeTransformer):
  """Routes risky operations through the runtime helpers (see `sandbox_builtins`)."""

  _BINOP_HELPERS = {ast.Pow: "__rao_pow__", ast.LShift: "__rao_lshift__"}

  def __init__(self):
    super().__init__()
    self._match_classes = 0  # Classes of class patterns bound so far (`__rao_class_N__`).

  def visit_ExceptHandler(self, node: ast.ExceptHandler):
    self.generic_visit(node)
    if node.type is None:
      node.type = ast.Name(id="Exception", ctx=ast.Load())
    return node

  def visit_BinOp(self, node: ast.BinOp):
    self.generic_visit(node)
    helper = self._BINOP_HELPERS.get(type(node.op))
    return node if helper is None else _helper_call(helper, node.left, node.right)

  def visit_AugAssign(self, node: ast.AugAssign):
    if isinstance(node.target, ast.Attribute):
      # `o.a += v` -> `__rao_setattr__(o, "a", o.a + v)` (evaluates `o` twice).
      current = ast.Attribute(value=copy.deepcopy(node.target.value), attr=node.target.attr,
                              ctx=ast.Load())
      updated = ast.copy_location(ast.BinOp(left=current, op=node.op, right=node.value), node)
      return self._set_attribute(node.target, updated, node)
    self.generic_visit(node)
    helper = self._BINOP_HELPERS.get(type(node.op))
    if helper is None:
      return node
    if not isinstance(node.target, ast.Name):
      raise CellRejected(
          f"augmented '**='/'<<=' is only allowed on plain names (line {node.lineno})")
    value = _helper_call(helper, ast.Name(id=node.target.id, ctx=ast.Load()), node.value)
    return ast.Assign(targets=[node.target], value=value)

  def visit_Attribute(self, node: ast.Attribute):
    self.generic_visit(node)
    if not isinstance(node.ctx, ast.Load):
      raise CellRejected("assign or delete attributes one at a time (`obj.attr = value`, "
                         f"`del obj.attr`) (line {node.lineno})")
    if node.attr in GUARDED_ATTRIBUTES:
      return _helper_call("__rao_getattr__", node.value, ast.Constant(node.attr))
    return node

  def visit_Match(self, node: ast.Match):
    """Checks, at match time, the classes of class patterns with positional sub-patterns.

    `case C(a, b):` reads the attributes named in `C.__match_args__` with the real `getattr`. A
    pattern's class must be a dotted name, so each such case is preceded by a case that never
    matches and whose guard binds the class through `__rao_match_class__` (which refuses names that
    break the attribute rules); the pattern then names the bound class:

        case _ if not ((__rao_class_0__ := __rao_match_class__(C, 2)),): pass
        case __rao_class_0__(a, b): ...

    Cases are tried in order, so each class is looked up and checked exactly when its case is
    reached (the classes of one case are all looked up before its pattern is tried).
    """
    self.generic_visit(node)
    cases = []
    for case in node.cases:
      checks = []
      for pattern in ast.walk(case.pattern):
        if type(pattern) is ast.MatchClass and pattern.patterns:
          name = f"__rao_class_{self._match_classes}__"
          self._match_classes += 1
          check = _helper_call("__rao_match_class__", pattern.cls,
                               ast.Constant(len(pattern.patterns)))
          checks.append(ast.NamedExpr(target=ast.Name(id=name, ctx=ast.Store()), value=check))
          for new_node in (check, checks[-1], checks[-1].target):
            ast.copy_location(new_node, pattern)
          pattern.cls = ast.copy_location(ast.Name(id=name, ctx=ast.Load()), pattern.cls)
      if checks:
        guard = ast.copy_location(
            ast.UnaryOp(op=ast.Not(), operand=ast.Tuple(elts=checks, ctx=ast.Load())), case.pattern)
        never = ast.copy_location(ast.MatchAs(pattern=None, name=None), case.pattern)
        cases.append(ast.match_case(pattern=never, guard=guard,
                                    body=[ast.copy_location(ast.Pass(), case.pattern)]))
      cases.append(case)
    node.cases = cases
    return node

  def visit_Assign(self, node: ast.Assign):
    if len(node.targets) == 1 and isinstance(node.targets[0], ast.Attribute):
      target = node.targets[0]
      return self._set_attribute(target, node.value, node)
    return self.generic_visit(node)

  def visit_AnnAssign(self, node: ast.AnnAssign):
    if isinstance(node.target, ast.Attribute):
      if node.value is None:
        return None
      return self._set_attribute(node.target, node.value, node)
    return self.generic_visit(node)

  def visit_Delete(self, node: ast.Delete):
    statements = []
    for target in node.targets:
      if isinstance(target, ast.Attribute):
        call = _helper_call("__rao_delattr__", self.visit(target.value), ast.Constant(target.attr))
        statements.append(ast.copy_location(ast.Expr(call), node))
      else:
        statements.append(ast.copy_location(ast.Delete(targets=[self.visit(target)]), node))
    return statements

  def _set_attribute(self, target: ast.Attribute, value: ast.expr, node: ast.stmt) -> ast.stmt:
    call = _helper_call("__rao_setattr__", self.visit(target.value), ast.Constant(target.attr),
                        self.visit(value))
    return ast.copy_location(ast.Expr(call), node)


def _show_trailing_expression(tree: ast.Module) -> None:
  """Replaces a final bare expression `e` by `__rao_show__(e)` (REPL-style echo)."""
  if tree.body and isinstance(tree.body[-1], ast.Expr):
    last = tree.body[-1]
    show = ast.Name(id="__rao_show__", ctx=ast.Load())
    call = ast.Call(func=show, args=[last.value], keywords=[])
    for new_node in (show, call):
      ast.copy_location(new_node, last.value)
    last.value = call


def prepare_cell(code: str) -> ast.Module:
  """Parses, validates and rewrites one cell; raises CellRejected or SyntaxError."""
  if type(code) is not str:
    raise CellRejected("a cell must be a str")
  if len(code) > MAX_CELL_CHARS:
    raise CellRejected(f"the cell is too long ({len(code)} > {MAX_CELL_CHARS} characters)")
  try:
    tree = ast.parse(code, filename=CELL_FILENAME, mode="exec")
    if _check(tree):
      tree = ast.fix_missing_locations(_Rewriter().visit(tree))
  except RecursionError:
    raise CellRejected("the cell is nested too deeply") from None
  except (CellRejected, SyntaxError, ValueError, MemoryError):
    raise
  except Exception as error:  # The parser failing in an unexpected way (an import it needs, say).
    raise CellRejected(f"the cell could not be parsed: {type(error).__name__}: {error}") from None
  _show_trailing_expression(tree)
  return tree


@functools.lru_cache(maxsize=4096)
def compile_cell(code: str):
  """Compiled code of a checked cell (top-level `await` allowed); cached by source text."""
  tree = prepare_cell(code)
  try:
    return compile(tree, CELL_FILENAME, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                   dont_inherit=True)
  except RecursionError:
    raise CellRejected("the cell is nested too deeply") from None
