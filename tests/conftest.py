"""Shared pytest configuration: the real-component fixtures live in tests/infra/."""

from collections.abc import Callable
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.infra.prefect_server",
    "tests.infra.cluster",
]

_MEASUREMENTS: dict[str, str] = {}
Measure = Callable[[str, object], None]


@pytest.fixture
def measure() -> Measure:
    """Record a measured figure; all of them are printed at the end of the run."""

    def record(name: str, value: object) -> None:
        _MEASUREMENTS[name] = str(value)

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _MEASUREMENTS:
        terminalreporter.section("measurements")
        for name, value in sorted(_MEASUREMENTS.items()):
            terminalreporter.write_line(f"{name}: {value}")


_UNIT = Path(__file__).parent / "unit"
# Outside the unit tests, a socket or loop left to the garbage collector (a test's server
# thread, a subprocess pipe, a third-party client) is reported in the warnings summary, not
# failed: *when* the collector runs decides which test it lands on. Every other warning stays
# an error everywhere (pyproject's filterwarnings).
_REPORTED_NOT_FAILED = (
    pytest.mark.filterwarnings("default::ResourceWarning"),
    pytest.mark.filterwarnings("default::pytest.PytestUnraisableExceptionWarning"),
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _UNIT not in Path(str(item.path)).parents:
            for mark in _REPORTED_NOT_FAILED:
                item.add_marker(mark)
