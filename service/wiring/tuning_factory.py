"""The live tunables: the policies built from their values (at start and on
every change, by the same functions), and the live config that hands each
change to the components that use it."""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping
from typing import Any

from service.adapters.control_log import SqlControlLog
from service.adapters.patches import SESSIONS_CONNECTION_BYTES
from service.adapters.socketio_server import SocketIOSender
from service.config import Settings
from service.domain.backpressure_policy import BackpressurePolicy
from service.domain.batching import BatchPolicy
from service.domain.cache import TtlLruCache
from service.domain.capacity import connection_limit
from service.domain.compression import CompressionPolicy
from service.domain.connections import ConnectionPolicy
from service.domain.token_bucket import parse_rates
from service.service_layer.backpressure import Backpressure
from service.service_layer.cache_stats import retune_caches
from service.service_layer.delivery import DeliveryHub
from service.service_layer.live_config import LiveConfig
from service.service_layer.publish_throttle import PublishThrottle
from service.service_layer.telemetry import TelemetryRing
from service.service_layer.write_batching import WriteBatcher

Values = Mapping[str, Any]  # tunable name -> value (Settings.tunables, LiveConfig.values)


def batch_policy(values: Values) -> BatchPolicy:
    return BatchPolicy(max_size=values["batch_size"],
                       max_wait_s=values["batch_timeout_ms"] / 1000.0)


def connection_policy(settings: Settings, values: Values,
                      connection_bytes: int) -> ConnectionPolicy:
    """The node's connection limit, shared by its workers (``serve
    --workers``). The levels' limits were set for what a connection costs with
    the library patches in force: where one costs more (``connection_bytes``,
    a patch left out), the limit shrinks to what the memory budget holds."""
    limit = connection_limit(values["max_connections"], values["memory_budget_mb"] << 20,
                             connection_bytes=connection_bytes,
                             planned_connection_bytes=SESSIONS_CONNECTION_BYTES)
    return ConnectionPolicy(max_per_node=settings.per_worker(limit),
                            max_per_user=values["max_connections_per_user"],
                            idle_timeout_s=values["idle_timeout"])


def compression_policy(values: Values) -> CompressionPolicy:
    return CompressionPolicy(min_bytes=values["compression_min_bytes"])


def backpressure_policy(settings: Settings, values: Values) -> BackpressurePolicy:
    return BackpressurePolicy.for_budget(values["memory_budget_mb"] << 20,
                                         settings.backpressure_actions,
                                         high_water_bytes=settings.backpressure_high_water_bytes)


def retuner(settings: Settings, connection_bytes: int, *, hub: DeliveryHub,
            sender: SocketIOSender, backpressure: Backpressure, writes: WriteBatcher,
            throttle: PublishThrottle,
            caches: Mapping[str, TtlLruCache]) -> Callable[[dict[str, Any]], None]:
    """What hands live tunables to the components that use them."""
    def retune(values: dict[str, Any]) -> None:
        hub.retune(batching=batch_policy(values),
                   policy=connection_policy(settings, values, connection_bytes),
                   compression=compression_policy(values))
        sender.max_queued_bytes = values["send_queue_max_bytes"]
        writes.max_batch = values["write_batch_size"]
        writes.window_s = values["write_batch_window_ms"] / 1000.0
        throttle.set_rates(parse_rates(values["throttle"], {}))
        backpressure.policy = backpressure_policy(settings, values)
        gc.set_threshold(values["gc_gen0_threshold"], *gc.get_threshold()[1:])
        retune_caches(caches, values)

    return retune


def build_live_config(settings: Settings, control_log: SqlControlLog,
                      apply: Callable[[dict[str, Any]], None], recorder: TelemetryRing | None,
                      *, announce: bool = True) -> LiveConfig:
    """The config in force: the level and the environment's overrides, then
    the control log's history folded in (read here, once: the one read of
    the database while a process is built), then every change it delivers."""
    return LiveConfig(settings.optimization_level, settings.env_overrides(), apply, recorder,
                      log=control_log, announce=announce)
