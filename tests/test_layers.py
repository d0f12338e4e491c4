"""The layer rules of docs/architecture.md, checked on the real import graph (grimp, import-linter's engine).

Dependencies run one way: ``transport -> app -> actors -> playback -> auralis``, with
``auralisd/protocol`` a sans-IO leaf. Rules are allow-lists where they can be, so a new module
cannot slip past them. Imports inside functions count: grimp reads every ``import`` statement.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

import grimp
import pytest

# Imports that break a rule today and are being removed; each names its way out. The test also
# fails when one of these disappears, so the list stays true.
KNOWN_VIOLATIONS: frozenset[tuple[str, str]] = frozenset()

TRIO_FAMILY = ("trio", "trio_websocket", "trio_parallel")
DAEMON_LAYERS = ("auralisd.playback", "auralisd.actors", "auralisd.app", "auralisd.transport")  # low -> high


@cache
def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("auralis", "auralisd", "clients", include_external_packages=True)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _imports(package: str) -> Iterator[tuple[str, str]]:
    graph = _graph()
    for module in sorted(graph.modules):
        if _within(module, package):
            for imported in sorted(graph.find_modules_directly_imported_by(module)):
                yield module, imported


def _breaks(package: str, rule) -> list[tuple[str, str]]:
    return [(m, i) for m, i in _imports(package) if rule(i) and (m, i) not in KNOWN_VIOLATIONS]


def test_auralis_the_dsp_library_imports_nothing_of_the_daemon_or_the_event_loop() -> None:
    forbidden = ("auralisd", "clients", "msgpack", "h11", *TRIO_FAMILY)
    assert _breaks("auralis", lambda i: any(_within(i, f) for f in forbidden)) == []


def test_protocol_is_a_leaf_that_imports_nothing_else_of_ours() -> None:
    def ours_outside_protocol(i: str) -> bool:
        return (_within(i, "auralisd") and not _within(i, "auralisd.protocol")) or _within(i, "auralis")

    assert _breaks("auralisd.protocol", ours_outside_protocol) == []
    assert _breaks("auralisd.protocol", lambda i: any(_within(i, t) for t in TRIO_FAMILY)) == []


def test_playback_core_is_pure_and_synchronous() -> None:
    if not any(_within(m, "auralisd.playback") for m in _graph().modules):
        pytest.skip("auralisd.playback does not exist yet")
    higher = DAEMON_LAYERS[1:]
    assert _breaks("auralisd.playback", lambda i: any(_within(i, t) for t in TRIO_FAMILY)) == []
    assert _breaks("auralisd.playback", lambda i: any(_within(i, h) for h in higher)) == []


@pytest.mark.parametrize("level", range(1, len(DAEMON_LAYERS)))
def test_no_layer_reaches_up(level: int) -> None:
    layer, higher = DAEMON_LAYERS[level - 1], DAEMON_LAYERS[level:]
    assert _breaks(layer, lambda i: any(_within(i, h) for h in higher) or _within(i, "auralisd.main")) == []


def test_transport_is_an_adapter_that_does_no_dsp() -> None:
    assert _breaks("auralisd.transport", lambda i: _within(i, "auralis")) == []


def test_nothing_imports_main_but_the_entry_points() -> None:
    entry_points = {"auralisd.__main__", "auralisd.demo"}
    offenders = [
        (m, i) for m, i in _imports("auralisd") if _within(i, "auralisd.main") and m not in entry_points | {"auralisd.main"}
    ]
    assert offenders == []


def test_known_violations_are_still_real() -> None:
    """Remove an entry from KNOWN_VIOLATIONS as soon as the import it excuses is gone."""
    present = {pair for pkg in ("auralisd",) for pair in _imports(pkg)}
    assert sorted(KNOWN_VIOLATIONS - present) == []
