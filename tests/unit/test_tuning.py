from pathlib import Path

import pytest

from service.config import Settings
from service.domain.errors import InvalidInput
from service.domain.levels import LEVELS
from service.domain.tuning import TUNABLES, check_parameters, effective, preset
from service.service_layer.live_config import LiveConfig
from tests.support.fakes import RecordingTelemetry


@pytest.mark.parametrize("env", [
    {},
    {"OPTIMIZATION_LEVEL": "maximum", "BATCH_SIZE": "7", "THROTTLE": "low=off"},
    {"OPTIMIZATION_LEVEL": "conservative", "IDLE_TIMEOUT": "60", "MEMORY_BUDGET_MB": "100"},
])
def test_the_live_config_starts_where_the_settings_do(tmp_path, env):
    settings = Settings.from_env({"VAR_DIR": str(tmp_path), **env})
    assert effective(settings.optimization_level, settings.env_overrides()) == (
        settings.tunables())


def test_every_level_sets_every_tunable_it_names():
    for level in LEVELS:
        values = preset(level)
        assert set(values) == set(TUNABLES)
        assert values["batch_size"] == LEVELS[level].batch_size


@pytest.mark.parametrize(("parameters", "field"), [
    ({"batch_size": 0}, "parameters.batch_size"),
    ({"batch_size": 2.5}, "parameters.batch_size"),
    ({"batch_size": True}, "parameters.batch_size"),
    ({"batch_timeout_ms": "50"}, "parameters.batch_timeout_ms"),
    ({"throttle": "high=fast"}, "parameters.throttle"),
    ({"batch_size": 10, "colour": "red"}, "parameters.colour"),
])
def test_bad_parameters_are_refused_by_name(parameters, field):
    with pytest.raises(InvalidInput) as refused:
        check_parameters(parameters)
    assert refused.value.field == field


class Recorder:
    def __init__(self) -> None:
        self.applied: list[dict] = []

    def __call__(self, values: dict) -> None:
        self.applied.append(values)


def test_a_level_change_keeps_overrides_and_is_recorded():
    applied, telemetry = Recorder(), RecordingTelemetry()
    config = LiveConfig("balanced", {"batch_size": 7}, applied, telemetry)
    after = config.change({"level": "aggressive", "reason": "evening peak"})
    assert after["level"] == "aggressive"
    assert after["parameters"]["batch_size"] == 7  # the start-up override stays
    assert after["parameters"]["batch_timeout_ms"] == LEVELS["aggressive"].batch_timeout_ms
    assert applied.applied == [after["parameters"]]
    after = config.change({"parameters": {"batch_timeout_ms": 30, "batch_size": 20}})
    assert (after["parameters"]["batch_timeout_ms"], after["parameters"]["batch_size"]) == (30, 20)
    after = config.change({"parameters": {"batch_timeout_ms": None}})  # back to the level's
    assert after["parameters"]["batch_timeout_ms"] == LEVELS["aggressive"].batch_timeout_ms
    [first, second, third] = [(t["kind"], f["text"]) for m, t, f in telemetry.records
                              if m == "config_change"]
    assert first[0] == "level" and "balanced -> aggressive" in first[1]
    assert "evening peak" in first[1]
    assert second == ("parameter", "batch_size=20; batch_timeout_ms=30.0")


@pytest.mark.parametrize(("body", "field"), [
    ({}, "body"), ([], "body"), ({"level": "turbo"}, "level"),
    ({"level": "balanced", "mode": "x"}, "mode"), ({"reason": "why"}, "body"),
    ({"level": {}}, "level"), ({"level": ["balanced"]}, "level"),
])
def test_a_bad_change_is_refused_and_nothing_is_applied(body, field):
    applied = Recorder()
    config = LiveConfig("balanced", {}, applied, None)
    with pytest.raises(InvalidInput) as refused:
        config.change(body)
    assert refused.value.field == field and applied.applied == []


def test_a_retuned_hub_batches_open_connections_by_the_new_rules():
    from service.domain.batching import BatchPolicy
    from service.domain.compression import CompressionPolicy
    from service.domain.connections import ConnectionPolicy
    from service.domain.model import PublishRequest, utcnow
    from service.service_layer.delivery import DeliveryHub
    from tests.support.fakes import InMemoryNotificationLog, ManualSpawner, RecordingSender

    log, sender, spawn = InMemoryNotificationLog(), RecordingSender(), ManualSpawner()
    hub = DeliveryHub(log, sender, None, spawn, batching=BatchPolicy(max_size=50))
    hub.connect("s1", "ann", last_offset=None)
    spawn.run_all()
    hub.retune(batching=BatchPolicy(max_size=2), policy=ConnectionPolicy(),
               compression=CompressionPolicy())
    request = PublishRequest.from_body({"user_id": "ann", "category": "c"})
    for i in range(4):
        hub.deliver(log.append(request, f"m{i}", utcnow()))
    assert [len(b) for b in sender.batches("s1")] == [2, 2]  # no timer needed: size 2


def test_new_throttle_rates_never_refill_a_bucket():
    from service.domain.model import Priority, PublishRequest
    from service.domain.token_bucket import Rate, Throttled
    from service.service_layer.publish_throttle import PublishThrottle

    now = [0.0]
    throttle = PublishThrottle({Priority.NORMAL: Rate(1, 3)}, clock=lambda: now[0])
    request = PublishRequest.from_body({"user_id": "ann", "category": "c"})
    for _ in range(3):
        throttle.admit(request)
    throttle.set_rates({Priority.NORMAL: Rate(100, 1000)})
    with pytest.raises(Throttled):
        throttle.admit(request)  # the bucket was empty, and stays so at once
    now[0] = 0.05
    throttle.admit(request)  # the new rate refills it from here on


def test_a_partial_throttle_keeps_the_other_priorities_of_the_level_in_force():
    config = LiveConfig("balanced", {"throttle": "low=off"}, Recorder(), None)
    assert config.values["throttle"] == "low=off,normal=200:400,high=500:1000,critical=off"
    after = config.change({"level": "aggressive"})  # the start-up override stays, on top
    assert after["parameters"]["throttle"] == "low=off,normal=300:600,high=500:1000,critical=off"
    after = config.change({"parameters": {"throttle": "high=50:100"}})
    assert after["parameters"]["throttle"] == "low=off,normal=300:600,high=50:100,critical=off"


def test_every_tunable_is_documented():
    docs = Path(__file__).resolve().parents[2] / "docs"
    configuration = (docs / "configuration.md").read_text()
    api = (docs / "api.md").read_text()
    assert [t.env for t in TUNABLES.values() if f"`{t.env}`" not in configuration] == []
    assert [name for name in TUNABLES if f"`{name}`" not in api] == []
