"""Who may import whom inside ``hub/`` (docs/architecture.md "Who may import whom"), read from the source.

Every import counts, also one inside a function or under ``TYPE_CHECKING``: an import hidden in a function
is how the hub and its edges imported each other before.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

HUB = Path(__file__).resolve().parent.parent / "hub"

EDGES = ("hub.mqtt", "hub.web", "hub.fleet")
# The one place that knows the core and the edges both: it builds a hub and hands it its edges.
COMPOSITION_ROOTS = frozenset({"hub.compose", "hub.cli"})
# What any edge may import besides its own package: the service protocols, the model, and small modules that
# import nothing of the core (their own imports are checked below): hub.records holds what the venue store
# returns and raises, so no edge needs the store itself.
EDGE_MAY_IMPORT = frozenset({"hub.service", "hub.model", "hub.records", "hub.redact", "hub.text", "hub.auth",
                             "hub.backoff", "hub.clock", "hub.config", "hub.frequency", "hub.descriptors",
                             "hub.names"})  # fmt: skip
# The fleet is built on both other edges (their topics, their routes), and its mirror fills the fleet's own
# state store the way drivers fill a hub's.
EDGE_EXTRA = {"hub.fleet": frozenset({"hub.mqtt", "hub.web", "hub.state"})}
LEAVES = EDGE_MAY_IMPORT - {"hub.service", "hub.model"}
# the package itself (its version) counts as a module of its own, never as everything under it
TOP = "hub"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(HUB.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for path in HUB.rglob("*.py")}


@cache
def imports_of(module: str) -> frozenset[str]:
    """The hub modules ``module`` imports (``from hub.x import y`` is ``hub.x.y`` when that is a module)."""
    known = modules()
    found: set[str] = set()
    for node in ast.walk(ast.parse(known[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in known else node.module)
    return frozenset(name for name in found if name in known and name != module)


def within(module: str, packages: frozenset[str] | tuple[str, ...]) -> bool:
    return any(module == package or module.startswith(f"{package}.") for package in packages)


def edge_of(module: str) -> str | None:
    return next((edge for edge in EDGES if within(module, (edge,))), None)


def cycles() -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in sorted(imports_of(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = [stack.pop()]
            while group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(modules()):
        if module not in index:
            visit(module)
    return found


def test_the_rule_reads_the_whole_hub_package() -> None:
    names = modules()
    assert {"hub.app", "hub.service", "hub.compose", "hub.mqtt.bridge", "hub.web.server", "hub.fleet.mirror"} <= set(
        names
    )
    assert "hub.service" in imports_of("hub.mqtt.bridge"), "imports are read from the source"


def test_no_import_cycle_inside_hub() -> None:
    assert cycles() == []


def edge_imports_outside_the_rule() -> dict[str, list[str]]:
    """Per edge module, what it imports beyond the service, the model, the shared leaves and its own package."""
    wrong = {}
    for module in modules():
        edge = edge_of(module)
        if edge is None:
            continue
        allowed = (edge, *EDGE_MAY_IMPORT, *EDGE_EXTRA.get(edge, ()))
        outside = sorted(
            imported for imported in imports_of(module) if imported != TOP and not within(imported, allowed)
        )
        if outside:
            wrong[module] = outside
    return wrong


def test_edges_import_only_the_service_the_model_and_their_own_package() -> None:
    assert edge_imports_outside_the_rule() == {}


def test_an_edge_importing_the_store_breaks_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """The venue routes reach the store through hub.service.VenueService: importing hub.persistence is caught."""
    graph = {
        "hub.web.venue": frozenset({"hub.service", "hub.records", "hub.persistence"}),
        "hub.mqtt.publisher": frozenset({"hub.persistence.show"}),
        "hub.persistence": frozenset(),
        "hub.persistence.show": frozenset(),
    }
    monkeypatch.setattr(f"{__name__}.modules", lambda: dict.fromkeys(graph, HUB))
    monkeypatch.setattr(f"{__name__}.imports_of", graph.__getitem__)
    assert edge_imports_outside_the_rule() == {
        "hub.web.venue": ["hub.persistence"],
        "hub.mqtt.publisher": ["hub.persistence.show"],
    }


def test_the_core_never_imports_an_edge() -> None:
    wrong = {
        module: sorted(imported for imported in imports_of(module) if edge_of(imported))
        for module in modules()
        if edge_of(module) is None and module not in COMPOSITION_ROOTS
    }
    assert {module: edges for module, edges in wrong.items() if edges} == {}


def test_shared_leaves_import_only_each_other() -> None:
    leaves = tuple(LEAVES)
    wrong = {
        module: sorted(imported for imported in imports_of(module) if not within(imported, leaves))
        for module in modules()
        if within(module, leaves)
    }
    assert {module: outside for module, outside in wrong.items() if outside} == {}


def test_a_cycle_is_found_when_there_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cycle finder itself: two modules that import each other are one group."""
    graph = {"hub.a": frozenset({"hub.b"}), "hub.b": frozenset({"hub.a"}), "hub.c": frozenset({"hub.a"})}
    monkeypatch.setattr(f"{__name__}.modules", lambda: dict.fromkeys(graph, HUB))
    monkeypatch.setattr(f"{__name__}.imports_of", graph.__getitem__)
    assert cycles() == [["hub.a", "hub.b"]]
