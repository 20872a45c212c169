import os

import pytest

from simulators.mosquitto import Mosquitto, find_mosquitto


@pytest.fixture
def broker_factory(tmp_path):
    """Start real mosquitto brokers on free loopback ports; all are stopped afterwards."""
    if not find_mosquitto():
        pytest.fail("mosquitto is not installed; `make test` installs it (apt-get install -y mosquitto)")
    started: list[Mosquitto] = []

    def make(name: str = "broker", **kwargs) -> Mosquitto:
        broker = Mosquitto(tmp_path / name, **kwargs).start()
        started.append(broker)
        return broker

    yield make
    for broker in started:
        broker.stop()


@pytest.fixture
def broker(broker_factory):
    return broker_factory()


def pytest_collection_modifyitems(config, items):
    if os.environ.get("LANEAGENT_LONG") == "1":
        return
    skip = pytest.mark.skip(reason="long soak test: run with LANEAGENT_LONG=1 (make test-long)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
