"""The architecture's done-when checks (issue 14), enforced on the source with `ast`:

- no import cycle between tuneforge modules (module-level and function-level imports both count;
  imports under `if TYPE_CHECKING:` do not run and do not count);
- no module over MAX_MODULE_LINES lines, no function over MAX_FUNCTION_LINES lines;
- outside tasks/ and methods/ no code branches on a task or method name: neither the text patterns the
  issue names (`task ==`, `method.name ==`, `.name in (`, `hasattr(task`, ...) nor a comparison with, or
  a collection of, registered task/method names — each survivor is in ALLOWED with its reason;
- every package has an `__init__` docstring that says what its stage does.

`python tests/test_architecture.py [SRC_ROOT]` prints the counts (used for the issue's before/after).
"""
from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "tuneforge"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80
FREE_PACKAGES = ("tasks", "methods")  # the two places that may name tasks and methods
# The grep patterns, plus the hook forms it counted (hasattr/getattr on a task or method).
PATTERNS = [r"\btask\s*[!=]=", r"\bmethod\.name\s*[!=]=", r"\.name\s+in\s*\(", r"\bhasattr\(\s*(task|method)\b",
            r"\bgetattr\(\s*(task|method)\b"]
# (module, text on the line) -> why it may stay. Keep each reason to one line.
ALLOWED: dict[tuple[str, str], str] = {
    ("tuneforge.config", 'cfg.name in (".", "..")'): "the run name, not a task or method name",
}


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    lines: list[str]
    imports: set[str] = field(default_factory=set)


def load(root: Path = ROOT) -> dict[str, Module]:
    """Every module under `root` (a tuneforge source tree), parsed, with its imports of other tuneforge modules."""
    modules: dict[str, Module] = {}
    for path in sorted(root.rglob("*.py")):
        parts = ("tuneforge",) + path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        text = path.read_text(encoding="utf-8")
        modules[name] = Module(name, path, ast.parse(text), text.splitlines())
    for mod in modules.values():
        mod.imports = _imports(mod, modules)
    return modules


def _type_checking_blocks(tree: ast.Module) -> set[int]:
    """ids of the nodes inside `if TYPE_CHECKING:` (imports there never run)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def _imports(mod: Module, modules: dict[str, Module]) -> set[str]:
    skip = _type_checking_blocks(mod.tree)
    is_package = mod.path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(mod.tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = mod.name.split(".") if is_package else mod.name.split(".")[:-1]
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from pkg import module` imports that module
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {n for n in found if n in modules and n != mod.name}


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(modules[v].imports):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(modules):
        if v not in index:
            visit(v)
    return out


def functions(modules: dict[str, Module]) -> list[tuple[int, str]]:
    """(lines, module:qualified name) of every function and method, longest first."""
    found = []
    for mod in modules.values():
        def walk(node: ast.AST, prefix: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found.append((child.end_lineno - child.lineno + 1, f"{mod.name}:{prefix}{child.name}"))
                    walk(child, f"{prefix}{child.name}.")
                elif isinstance(child, ast.ClassDef):
                    walk(child, f"{prefix}{child.name}.")
        walk(mod.tree, "")
    return sorted(found, reverse=True)


def registered_names() -> set[str]:
    """Every task and method name of the registries (what code outside them must not spell out)."""
    sys.path.insert(0, str(ROOT.parent))
    from tuneforge.methods import REGISTRY as METHODS
    from tuneforge.tasks import REGISTRY as TASKS

    return set(METHODS) | set(TASKS)


def _free(name: str) -> bool:
    return any(name == f"tuneforge.{p}" or name.startswith(f"tuneforge.{p}.") for p in FREE_PACKAGES)


def _named(node: ast.AST, names: set[str]) -> int:
    """How many registered names a literal spells: a string, or a tuple/list/set/dict (keys) of them."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return int(node.value in names)
    items = node.keys if isinstance(node, ast.Dict) else getattr(node, "elts", None) \
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else None
    return sum(isinstance(i, ast.Constant) and i.value in names for i in items or [])


def name_branches(modules: dict[str, Module], names: set[str]) -> list[tuple[str, int, str]]:
    """(module, line, text) of every branch on a task or method name outside tasks/ and methods/."""
    hits: dict[tuple[str, int], str] = {}
    for mod in modules.values():
        if _free(mod.name):
            continue
        for i, line in enumerate(mod.lines, 1):
            code = line.split("#")[0]
            if any(re.search(p, code) for p in PATTERNS):
                hits[mod.name, i] = line.strip()
        for node in ast.walk(mod.tree):
            if isinstance(node, ast.Compare) and any(_named(c, names) for c in [node.left, *node.comparators]):
                hits[mod.name, node.lineno] = mod.lines[node.lineno - 1].strip()
            elif isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)) and _named(node, names) >= 2:
                hits[mod.name, node.lineno] = mod.lines[node.lineno - 1].strip()
    return [(m, i, text) for (m, i), text in sorted(hits.items())
            if not any(m == am and snippet in text for am, snippet in ALLOWED)]


def undocumented_packages(modules: dict[str, Module]) -> list[str]:
    """Packages whose __init__ has no docstring of at least one real sentence."""
    return [m.name for m in modules.values() if m.path.name == "__init__.py"
            and len(ast.get_docstring(m.tree) or "") < 80]


# ---------------------------------------------------------------------------------------------- tests

MODULES = load()


def test_no_import_cycles() -> None:
    found = cycles(MODULES)
    assert not found, "import cycles: " + "; ".join(" ⇄ ".join(c) for c in found)


def test_no_module_over_the_limit() -> None:
    long = {m.name: len(m.lines) for m in MODULES.values() if len(m.lines) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_over_the_limit() -> None:
    long = [(n, f) for n, f in functions(MODULES) if n > MAX_FUNCTION_LINES]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_no_task_or_method_name_branches_outside_their_packages() -> None:
    found = name_branches(MODULES, registered_names())
    assert not found, "branches on a task/method name (ask the task or method, or add a reason to ALLOWED):\n" \
        + "\n".join(f"  {m}:{i}: {t}" for m, i, t in found)


def test_every_package_says_what_its_stage_does() -> None:
    assert not undocumented_packages(MODULES)


def test_the_allow_list_has_no_stale_entries() -> None:
    """An ALLOWED entry that matches nothing any more must go (the list only shrinks honestly)."""
    for module, snippet in ALLOWED:
        assert module in MODULES and any(snippet in line for line in MODULES[module].lines), (module, snippet)


def test_every_registered_task_and_method_declares_what_others_ask() -> None:
    """A registry line is all a new task or method needs: the class behind it says the rest, and the config
    accepts exactly the registered names."""
    import typing

    from tuneforge.config import Config, MethodConfig
    from tuneforge.methods import REGISTRY as METHODS
    from tuneforge.methods import method_class
    from tuneforge.methods.base import FULL_WEIGHT, PARAMETER_EFFICIENT, Method
    from tuneforge.tasks import REGISTRY as TASKS
    from tuneforge.tasks import task_class
    from tuneforge.tasks.base import Task

    for name in TASKS:
        cls = task_class(name)
        assert issubclass(cls, Task) and cls.name == name
        assert cls.headline and set(cls.metrics.values()) <= {"min", "max"} and "loss" in cls.metrics
        assert cls.primary_metric in cls.headline and cls.peft_task_type and cls.auto_class.startswith("AutoModelFor")
    for name in METHODS:
        cls = method_class(name)
        assert issubclass(cls, Method) and cls.name == name
        assert cls.family in (FULL_WEIGHT, PARAMETER_EFFICIENT) and cls.default_lr > 0
        assert not (cls.saves_full_model and cls.frozen_base)  # an adapter on a frozen base is not a full model
    hints = typing.get_type_hints(Config), typing.get_type_hints(MethodConfig)
    assert typing.get_args(hints[0]["task"]) == tuple(TASKS)
    assert typing.get_args(hints[1]["name"]) == tuple(METHODS)


def test_the_checks_catch_what_they_look_for(tmp_path: Path) -> None:
    """The detectors themselves: a planted cycle, a long function, a name branch and a bare package."""
    pkg = tmp_path / "tuneforge"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""x"""\nfrom . import a\n')
    (pkg / "a.py").write_text("def f():\n    from .b import g\n    return g\n")
    (pkg / "b.py").write_text("from .a import f\n" + "def long():\n" + "    x = 1\n" * 90
                              + "def pick(cfg):\n    return cfg.task == 'classification'\n"
                              + "FAMILY = {'lora', 'dora'}\n")
    (pkg / "sub" / "__init__.py").write_text("")
    mods = load(pkg)
    assert cycles(mods) == [["tuneforge.a", "tuneforge.b"]]
    assert functions(mods)[0] == (91, "tuneforge.b:long")
    found = name_branches(mods, {"classification", "lora", "dora"})
    assert [(m, t) for m, _, t in found] == [("tuneforge.b", "return cfg.task == 'classification'"),
                                            ("tuneforge.b", "FAMILY = {'lora', 'dora'}")]
    assert set(undocumented_packages(mods)) == {"tuneforge", "tuneforge.sub"}


if __name__ == "__main__":  # counts for the before/after note
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT
    mods = load(root)
    names = {"classification", "instruction", "full", "scratch", "lora", "dora", "qlora", "adapter", "freeze"}
    branches = name_branches(mods, names)
    task_hits = [b for b in branches if re.search(r"task|classification|instruction", b[2])]
    fns = functions(mods)
    longest = max(mods.values(), key=lambda m: len(m.lines))
    hooks = [(m.name, i) for m in mods.values() for i, line in enumerate(m.lines, 1)
             if re.search(r"\b(hasattr|getattr)\(\s*(task|method)\b", line.split("#")[0])]
    print(f"modules {len(mods)}, lines {sum(len(m.lines) for m in mods.values())}")
    print(f"name branches outside tasks/ and methods/: {len(branches)} "
          f"(task-name {len(task_hits)}, method-name {len(branches) - len(task_hits)}); hasattr/getattr hooks {len(hooks)}")
    print(f"cycles: {cycles(mods)}")
    print(f"longest module: {longest.name} {len(longest.lines)} lines; longest function: {fns[0]}")
    print(f"modules over {MAX_MODULE_LINES}: {[(m.name, len(m.lines)) for m in mods.values() if len(m.lines) > MAX_MODULE_LINES]}")
    print(f"functions over {MAX_FUNCTION_LINES}: {[f for f in fns if f[0] > MAX_FUNCTION_LINES]}")
    for b in branches:
        print("  ", *b)
