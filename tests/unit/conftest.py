"""Fixtures shared by the unit tests: the control log in memory, and the
live config that follows it."""

import pytest

from service.service_layer.live_config import LiveConfig
from tests.support.fakes import InMemoryControlLog


@pytest.fixture
def log():
    return InMemoryControlLog()


@pytest.fixture
def config(log):
    return LiveConfig("balanced", {}, lambda values: None, None, log=log)
