"""The floors (docs/architecture.md, "Floors"): imports point down, and no package
imports in a circle.

    tillpoints   the composition root: command line, benchmarks, demo (imports all)
    ui           the cashier's screen: the agent's client and value helpers only
    sync         the protocol, the till's uploader; HQ in sync.hq (insight below it)
    agent        the till: ledger, journal format, keys, tables, daemon, local API
    drivers      card readers and decoders: nothing of ours

Every import counts, including those inside functions (a lazy import is still a
dependency); only ``if TYPE_CHECKING:`` blocks are left out, as they run nowhere.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "drivers", "sync", "tillpoints", "ui")

# What each floor may import of ours, besides itself.
ALLOWED: dict[str, tuple[str, ...]] = {
    "drivers": (),
    "agent": ("drivers",),
    "sync": ("agent", "drivers"),
    "ui": (
        "agent.client",
        "agent.errors",
        "agent.fields",
        "agent.money",
        "agent.config",
        "agent.suggestion_words",
    ),
    "tillpoints": ("agent", "drivers", "sync", "ui"),
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """The modules of ours that ``path`` imports, anywhere but ``if TYPE_CHECKING:``."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                names.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                for alias in child.names:
                    full = f"{child.module}.{alias.name}"
                    names.add(full if full in MODULES else child.module)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {name for name in names if name.split(".")[0] in PACKAGES}


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _floor(module: str) -> str:
    return module.split(".")[0]


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_imports_point_down() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in sorted(GRAPH.items())
        for target in sorted(targets)
        if _floor(target) != _floor(module) and not _within(target, ALLOWED[_floor(module)])
    ]
    assert wrong == []


def test_the_tills_uploader_does_not_import_hq() -> None:
    """A till installs without HQ's extras (falcon, psycopg): ``sync``'s till side
    never reaches into ``sync.hq``."""
    wrong = [
        f"{module} imports {target}"
        for module, targets in sorted(GRAPH.items())
        if module.startswith("sync.") and not _within(module, ("sync.hq",))
        for target in sorted(targets)
        if _within(target, ("sync.hq",))
    ]
    assert wrong == []


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(GRAPH[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            connect(node)
    return found


def test_no_module_imports_itself_round_a_circle() -> None:
    assert _cycles() == []


# HQ's storage: the interface, its two backends, the schema and the key file.
STORAGE = ("sync.hq.db", "sync.hq.sqlite", "sync.hq.postgres", "sync.hq.schema", "sync.hq.keyfile")


def test_hqs_storage_imports_no_insight() -> None:
    """Insight's tables are data in ``sync.hq.schema`` (``CAMPAIGNS_DDL``); the
    storage runs them without importing insight code, so insight sits above it."""
    assert set(STORAGE) <= set(MODULES)
    wrong = [
        f"{module} imports {target}"
        for module in STORAGE
        for target in sorted(GRAPH[module])
        if _within(target, ("sync.hq.insight",))
    ]
    assert wrong == []


def test_the_cycle_finder_sees_a_circle() -> None:
    """``_cycles`` is real: a circle added to the graph is reported."""
    GRAPH["sync.hq.schema"].add("sync.hq.insight.takes")
    try:
        assert ["sync.hq.insight.takes", "sync.hq.schema"] in _cycles()
    finally:
        GRAPH["sync.hq.schema"].discard("sync.hq.insight.takes")


def test_the_checks_see_a_wrong_import() -> None:
    """The graph is real: the CLI imports every floor, the ledger imports drivers."""
    assert {"agent.ledger", "sync.till_sync"} <= {
        m for m in MODULES if m.startswith(("agent.", "sync."))
    }
    assert any(_floor(t) == "drivers" for t in GRAPH["agent.ledger_reads"])
    assert any(_floor(t) == "sync" for t in GRAPH["tillpoints.cli_sync"])
