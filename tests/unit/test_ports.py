"""The adapters and the unit-test fakes implement the same ports (PrefectPort, KubePort)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from prefect_job_operator.kube.client import Kube
from prefect_job_operator.kube.port import KubePort
from prefect_job_operator.prefect_api.client import PrefectClient
from prefect_job_operator.prefect_api.port import PrefectPort
from tests.unit.fakes import FakeKube, FakePrefectClient


def _adapters_are_ports(client: PrefectClient, kube: Kube) -> tuple[PrefectPort, KubePort]:
    """Never called: mypy checks here that the real adapters satisfy the Protocols."""
    return client, kube


def _members(port: type[Any]) -> list[str]:
    return sorted(n for n, v in vars(port).items() if inspect.iscoroutinefunction(v))


@pytest.mark.parametrize(
    ("port", "implementation"),
    [
        (PrefectPort, PrefectClient),
        (PrefectPort, FakePrefectClient),
        (KubePort, Kube),
        (KubePort, FakeKube),
    ],
)
def test_every_port_call_exists_with_the_same_parameter_names(
    port: type[Any], implementation: type[Any]
) -> None:
    members = _members(port)
    assert len(members) >= 18
    for name in members:
        want = list(inspect.signature(getattr(port, name)).parameters)
        have = list(inspect.signature(getattr(implementation, name)).parameters)
        if have[-1:] == ["fields"]:  # the fake takes **fields for partial updates
            have = have[:-1]
            want = want[: len(have)]
        assert have == want, f"{implementation.__name__}.{name}"
