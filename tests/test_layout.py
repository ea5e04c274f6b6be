"""The shape of the library, held: no import circle, and no rule written twice for threads and for a loop.

Each capability that arrived as a second path beside the first grew its own
bugs (a thread's wait and a loop's, a live session and a rebuilt one), and
import circles are how such paths tangle.  A module imports only what is
below it, typing-only imports and imports inside functions included; and no
function has a twin ``X_async``: how a poll waits is a strategy
(``waits.py``), the rules are written once.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "longpoll"


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every longpoll module ``name`` imports, anywhere in it (``from . import x`` imports x, not the
    package: a package's ``__init__`` does not run its submodules' imports)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            full = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                target = f"{full}.{alias.name}" if f"{full}.{alias.name}" in known else full
                found.add(target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {target for target in found if target in known and target != name}


def test_no_import_circle_in_the_package():
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    circles = []
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done
    path: list[str] = []

    def walk(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                circles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                walk(target)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name)
    assert not circles, "\n".join(circles)


def test_no_function_has_a_twin_named_async():
    twins = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Module, ast.ClassDef)):
                defined = {child.name for child in node.body
                           if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))}
                twins += [f"{name}: {fn} and {fn}_async" for fn in defined if f"{fn}_async" in defined]
    assert not twins, twins


def test_the_library_never_imports_the_server_product():
    """An app that embeds the library never imports the book's app or ``longpoll serve``."""
    known = modules()
    reaching = [f"{name} imports {target}" for name, path in known.items() if not name.startswith("longpoll.server")
                for target in imports(name, path, known) if target.startswith("longpoll.server")]
    assert not reaching, reaching


def test_the_books_app_imports_only_the_public_api():
    """The status streams (``longpoll/server/streams/``) are an app written on the library like any other: it
    imports the names of ``longpoll.__all__`` and nothing else of the library (``longpoll.server`` is its own
    product), so what an app needs is public, documented and kept."""
    import longpoll

    public = set(longpoll.__all__) | {"server"}
    reaching: dict[str, None] = {}
    for path in sorted((PACKAGE / "server" / "streams").glob("*.py")):
        where = path.relative_to(ROOT)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = ["longpoll", "server", "streams"][:4 - node.level] if node.level else []
                full = ".".join(base + ([node.module] if node.module else []))
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                full, names = "", [alias.name for alias in node.names]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "longpoll":
                full, names = "longpoll", [node.attr]
            else:
                continue
            for name in names:
                target = f"{full}.{name}" if full else name
                if full == "longpoll":
                    if name not in public:
                        reaching[f"{where}:{node.lineno} uses longpoll.{name}, which is not public"] = None
                elif target.startswith("longpoll.") and not target.startswith("longpoll.server"):
                    reaching[f"{where}:{node.lineno} imports {full or name}, a module of the library"] = None
    assert not reaching, "\n".join(reaching)
