"""Prometheus metrics of a postern process (``prometheus-client``).

The doors and the queue count through ``M``, whose label children are bound once
(per door, per command name, per route): a message costs a few ``inc``/``observe``
calls on ready objects, no label lookup. ``setup(False)`` (``POSTERN_METRICS=false``)
makes every metric a no-op.

Mail worker processes are separate processes. ``postern serve`` uses
prometheus-client's multiprocess mode: before anything imports prometheus_client it
points ``PROMETHEUS_MULTIPROC_DIR`` at ``<data dir>/metrics`` (emptied at each start),
which the workers inherit; every process writes its values to its own memory-mapped
files, and a scrape sums them (``render``). A worker that dies leaves its counters
(they stay counted, as totals must) and its live gauges are dropped
(``process_exited``). Without the variable (tests, one process) the default registry
is used.

What is read from the database (queue depth and age) is collected on scrape by the
caller and passed to ``render``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

DOORS = ("http", "smtp", "lmtp", "submission", "imap", "pop3")
SMTP_DOORS = ("smtp", "lmtp", "submission")
# Latencies of mail commands and HTTP requests: 1 ms to 10 s.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def prepare_multiprocess(data_dir: Path) -> Path:
    """Point prometheus-client at a fresh ``<data_dir>/metrics`` (call before it is
    imported; the mail workers inherit the variable)."""
    directory = data_dir / "metrics"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory


class _Null:
    """A metric that counts nothing (metrics off)."""

    def inc(self, amount: float = 1) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass

    def labels(self, *args: Any, **kwargs: Any) -> _Null:
        return self


NULL = _Null()


class _Labelled:
    """Children of a labelled metric, bound once per label value and kept."""

    def __init__(self, metric: Any):
        self.metric = metric
        self.children: dict[Any, Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self.metric.labels(*values) if self.metric is not None else NULL
        return child


class Metrics:
    delivered: Any
    deferred: Any
    bounced: Any
    worker_restarts: Any
    event_bus_lag: Any

    def __init__(self, enabled: bool):
        self.enabled = enabled
        if not enabled:
            none = _Labelled(None)
            self.connections = self.connections_open = self.auth_failures = self.accepted = none
            self.http_duration = self.imap_duration = self.smtp_duration = none
            self.delivered = self.deferred = self.bounced = self.worker_restarts = self.event_bus_lag = NULL
            return
        from prometheus_client import Counter, Gauge, Histogram

        def per(metric: Any, values: tuple[str, ...]) -> _Labelled:
            labelled = _Labelled(metric)
            for value in values:
                labelled(value)
            return labelled

        self.connections = per(Counter("postern_connections", "Connections accepted, per door", ["door"]), DOORS)
        self.connections_open = per(
            Gauge("postern_connections_open", "Connections open now, per door", ["door"], multiprocess_mode="livesum"), DOORS
        )
        self.auth_failures = per(Counter("postern_auth_failures", "Failed authentications, per door", ["door"]), DOORS)
        self.accepted = per(Counter("postern_messages_accepted", "Messages accepted (one per transaction), per door", ["door"]), SMTP_DOORS)
        self.delivered = Counter("postern_messages_delivered", "Outbound deliveries accepted by the remote server")
        self.deferred = Counter("postern_messages_deferred", "Outbound delivery attempts deferred (retried later)")
        self.bounced = Counter("postern_messages_bounced", "Outbound deliveries given up (bounced)")
        self.http_duration = _Labelled(
            Histogram("postern_http_request_duration_seconds", "HTTP requests, by route template", ["method", "route"], buckets=BUCKETS)
        )
        self.imap_duration = _Labelled(
            Histogram("postern_imap_command_duration_seconds", "IMAP commands, by name", ["command"], buckets=BUCKETS)
        )
        self.smtp_duration = per(
            Histogram("postern_smtp_transaction_duration_seconds", "SMTP/LMTP DATA transactions, per door", ["door"], buckets=BUCKETS),
            SMTP_DOORS,
        )
        self.worker_restarts = Counter("postern_worker_restarts", "Mail worker processes started again after they died")
        self.event_bus_lag = Histogram(
            "postern_event_bus_lag_seconds",
            "Change events between nodes: from their publication to their message on the Redis bus",
            buckets=BUCKETS,
        )


M = Metrics(enabled=False)
_set_up = False


def setup(enabled: bool = True) -> Metrics:
    """Create the metrics (once per process; later calls return the same)."""
    global M, _set_up
    if not _set_up:
        M = Metrics(enabled)
        _set_up = True
    return M


def process_exited(pid: int) -> None:
    """A worker process ended: its live gauges no longer count."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def render(queue_depth: int | None = None, queue_oldest_age: float | None = None) -> tuple[bytes, str]:
    """The exposition text of every process's metrics, plus the queue figures."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily

    class _Queue:
        def collect(self) -> Any:
            if queue_depth is not None:
                yield GaugeMetricFamily("postern_queue_depth", "Outbound messages waiting or being sent", value=queue_depth)
            if queue_oldest_age is not None:
                yield GaugeMetricFamily(
                    "postern_queue_oldest_age_seconds", "Age of the oldest outbound message in the queue", value=queue_oldest_age
                )

    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(_Queue())
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY) + generate_latest(_single(_Queue())), CONTENT_TYPE_LATEST


def _single(collector: Any) -> Any:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(collector)
    return registry
