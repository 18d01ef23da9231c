"""Shared pytest configuration: the real-component fixtures live in tests/infra/."""

pytest_plugins = [
    "tests.infra.prefect_server",
    "tests.infra.cluster",
]
