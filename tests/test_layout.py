"""The package's shape, checked: no import circle between vcam modules (function-local imports
included), no module over 400 lines, no class over 250, so the folders keep reading as the pipeline."""
from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vcam"
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 250

# Known violations in folders other engineers are changing now. Each is a strict xfail, so the fix
# that lands turns it into a failure until its entry here is removed.
KNOWN = {
}


def find_modules(package: Path) -> dict[str, Path]:
    """{dotted name: file} of every module of `package` (a folder with __init__.py)."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imports_of(name: str, modules: dict[str, Path]) -> set[str]:
    """The package's modules that module `name` imports anywhere in its body (functions included)."""
    path = modules[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..mod import y
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # `from vcam.frames import i420` imports the module vcam.frames.i420
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # an attribute of a module, or not ours at all
                target = target.rpartition(".")[0]
            if target and target != name and "." in target:  # the bare package's __init__ holds no code
                found.add(target)
    return found


def find_circles(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    """For each module in an import circle, all the modules of its circle (strongly connected parts,
    Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: dict[str, list[str]] = {}

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = stack[stack.index(v):]
            del stack[stack.index(v):]
            if len(part) > 1:
                for w in part:
                    circles[w] = sorted(part)

    for v in graph:
        if v not in index:
            visit(v)
    return circles


MODULES = find_modules(PACKAGE)


@cache
def _circles() -> dict[str, list[str]]:
    return find_circles({name: imports_of(name, MODULES) for name in MODULES})


def _params(kind: str) -> list:
    params = []
    for name in MODULES:
        reason = KNOWN.get((kind, name))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.mark.parametrize("name", _params("circle"))
def test_module_is_in_no_import_circle(name):
    circle = _circles().get(name)
    assert circle is None, f"{name} is in an import circle with {', '.join(m for m in circle if m != name)}"


@pytest.mark.parametrize("name", _params("lines"))
def test_module_is_at_most_400_lines(name):
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{MODULES[name].relative_to(PACKAGE.parent)}: {lines} lines"


@pytest.mark.parametrize("name", _params("class"))
def test_classes_are_at_most_250_lines(name):
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    long = [f"{node.name}: {node.end_lineno - node.lineno + 1} lines" for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES]
    assert not long, f"{MODULES[name].relative_to(PACKAGE.parent)}: {', '.join(long)}"


def test_the_circle_check_sees_function_local_and_relative_imports(tmp_path):
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    for name, text in {
        "__init__.py": "",
        "sub/__init__.py": "",
        "a.py": "import os\nfrom pkg.sub import b\n",  # `from package import module`
        "sub/b.py": "def f():\n    from ..c import thing\n",  # function-local and relative
        "c.py": "import pkg.a\n",  # closes a -> b -> c -> a
        "d.py": "from pkg.a import os\n",  # imports a name of a: a one-way edge
    }.items():
        (root / name).write_text(text)
    modules = find_modules(root)
    graph = {name: imports_of(name, modules) for name in modules}
    assert graph["pkg.sub.b"] == {"pkg.c"} and graph["pkg.d"] == {"pkg.a"}
    circles = find_circles(graph)
    assert circles.keys() == {"pkg.a", "pkg.sub.b", "pkg.c"}
    assert circles["pkg.c"] == ["pkg.a", "pkg.c", "pkg.sub.b"]
