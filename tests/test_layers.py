"""The layers hold: the domain imports nothing of Telegram, HTTP or SQL; services nothing of
Telegram or HTTP; handlers only services (never storage); and no module imports itself
back through others. Read from the source with `ast`, so a violation fails here and not
only in review."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "storage")
SQL_HTTP_TELEGRAM = ("telegram", "httpx", "aiohttp", "aiosqlite", "asyncpg")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


@cache
def _imports(path: Path, *, runtime_top_level: bool) -> frozenset[str]:
    """Modules a file imports: all of them, or only those run when it is imported (module
    level, not under TYPE_CHECKING) when `runtime_top_level`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    known = _modules()
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                # `from bot.domain import notices` imports the module bot.domain.notices.
                found.update(
                    f"{node.module}.{alias.name}"
                    for alias in node.names
                    if f"{node.module}.{alias.name}" in known
                )
            elif isinstance(node, ast.If):
                if not (runtime_top_level and _is_type_checking(node)):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif not runtime_top_level:
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, ast.stmt):
                        visit([child])
                    else:
                        visit([s for s in ast.walk(child) if isinstance(s, ast.stmt)])

    visit(tree.body)
    return frozenset(found)


@cache
def _runtime_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for imported in _imports(path, runtime_top_level=True):
            # Importing a.b.c runs a and a.b too.
            parts = imported.split(".")
            edges.update(
                ".".join(parts[:i]) for i in range(1, len(parts) + 1)
                if ".".join(parts[:i]) in modules
            )
        edges.discard(name)
        graph[name] = edges
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _third_party_reached(start: str) -> set[str]:
    """Every top-level package the import of `start` loads, through our own modules."""
    modules = _modules()
    closure = {start} | _reachable(_runtime_graph(), start)
    return {
        imported.split(".")[0]
        for name in closure
        for imported in _imports(modules[name], runtime_top_level=True)
    }


def _in_package(package: str) -> list[str]:
    return [m for m in _modules() if m == package or m.startswith(package + ".")]


def test_the_domain_imports_no_telegram_http_sql_or_storage() -> None:
    domain = _in_package("bot.domain")
    assert len(domain) >= 6
    graph = _runtime_graph()
    for module in domain:
        reached = _third_party_reached(module)
        assert not reached & {*SQL_HTTP_TELEGRAM, "storage"}, (module, reached)
        ours = _reachable(graph, module)
        assert not {m for m in ours if m.startswith(("storage", "bot.services"))}, module
        # Not even for type hints.
        every = _imports(_modules()[module], runtime_top_level=False)
        assert not {i for i in every if i.split(".")[0] in {*SQL_HTTP_TELEGRAM, "storage"}}


def test_services_import_no_telegram_http_or_sql_driver() -> None:
    services = _in_package("bot.services")
    assert len(services) >= 6
    for module in services:
        reached = _third_party_reached(module)
        assert not reached & set(SQL_HTTP_TELEGRAM), (module, reached)


def test_handlers_call_services_only() -> None:
    handlers = _in_package("bot.telegram.handlers")
    assert len(handlers) >= 6
    modules = _modules()
    for module in handlers:
        every = _imports(modules[module], runtime_top_level=False)
        assert not {i for i in every if i.split(".")[0] == "storage"}, module
        source = modules[module].read_text(encoding="utf-8")
        assert ".repo." not in source and ".repo\n" not in source, module


def test_no_import_cycle() -> None:
    graph = _runtime_graph()
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(graph[module]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt] if nxt in path else [module, nxt])
            elif nxt not in state:
                walk(nxt, [*path, nxt])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    assert not cycles, cycles


def test_domain_and_services_modules_stay_small() -> None:
    for module in [*_in_package("bot.domain"), *_in_package("bot.services")]:
        lines = len(_modules()[module].read_text(encoding="utf-8").splitlines())
        assert lines <= 500, (module, lines)
