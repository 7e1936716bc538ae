"""Metric instruments backed by Ray Serve's metrics API, exported by each node's Ray metrics
agent (see router/observability/metrics.py for the metric set and docs/design/metrics.md for why)."""

from __future__ import annotations

from ray.serve import metrics as serve_metrics

from router.observability.metrics import Instrument, MetricSpec, Recorder


def serve_instruments(spec: MetricSpec) -> Instrument:
    """The `InstrumentFactory` used inside Serve replicas."""
    if spec.kind == "counter":
        counter = serve_metrics.Counter(spec.name, spec.description, spec.labels)
        return Recorder(lambda value, labels: counter.inc(value, tags=labels))
    if spec.kind == "gauge":
        gauge = serve_metrics.Gauge(spec.name, spec.description, spec.labels)
        return Recorder(lambda value, labels: gauge.set(value, tags=labels))
    histogram = serve_metrics.Histogram(
        spec.name, spec.description, list(spec.buckets), spec.labels
    )
    return Recorder(lambda value, labels: histogram.observe(value, tags=labels))


def gauge_refresh_period_s() -> float:
    """How often to re-report gauges: once per Ray metrics export interval (floored at 1 s by
    Ray), so a gauge never ages out of the agent (its TTL is two intervals).

    Ray has no public API for the interval; `ray._config` is the one place it is readable, so
    this is the single import of a private Ray module in the router.
    """
    import ray

    return max(ray._config.metrics_report_interval_ms(), 1000) / 1000
