"""Shared pytest configuration: the real-component fixtures live in tests/infra/."""

from collections.abc import Callable

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
