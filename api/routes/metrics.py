"""`GET /metrics`: Prometheus text from the official client library.

Every process reports the facts of the whole hub, read from Redis and the database at most
once per LOOMI_METRICS_CACHE_SECONDS (workers/metrics.py): queue depth and lag per stream
shard, listeners by platform and state, dead letters, live workers, totals by platform and AI
usage by provider and model. Those series are the same from every API process: aggregate them
with `max`, not `sum`. What is the process's own (CPU, memory, GC, entries it ingested,
listeners it holds) is labelled by Prometheus's `instance` and sums across processes.

Aggregates only: no account id, name, person or message reaches this page. Who may read it:
with LOOMI_METRICS_TOKEN set, a scraper sending `Authorization: Bearer <token>`; without it,
only a client on this machine (loopback) that came directly, not through a proxy.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.auth import bearer_token, hub_of
from api.errors import ApiError, unauthorized
from loomi.hub import Hub
from workers.metrics import Facts, cluster_facts

PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_access(request: Request, hub: Hub) -> None:
    """The token when one is configured; else loopback only, and never through a proxy (a
    reverse proxy on this machine would make the whole internet look like loopback)."""
    secret = hub.settings.metrics_token
    if secret is not None and secret.get_secret_value():
        sent = bearer_token(request) or ""
        if not hmac.compare_digest(sent.encode(), secret.get_secret_value().encode()):
            raise unauthorized("send Authorization: Bearer with LOOMI_METRICS_TOKEN")
        return
    if not _loopback(request) or any(h in request.headers for h in PROXY_HEADERS):
        raise ApiError(
            403, "Metrics are served to this machine only", "forbidden",
            "set LOOMI_METRICS_TOKEN to let a scraper on another machine (or behind a proxy) read /metrics",
        )


class HubCollector(Collector):
    """Turns the last `Facts` (and this process's own counters) into metric families."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.facts: Facts | None = None

    def collect(self) -> Iterator[Metric]:
        facts = self.facts
        if facts is None:
            return
        yield from self._queue(facts)
        yield from self._listeners(facts)
        yield from self._totals(facts)
        yield from self._ai(facts)
        yield from self._process()

    def _queue(self, facts: Facts) -> Iterator[Metric]:
        depth = GaugeMetricFamily("loomi_stream_depth", "Inbound entries not yet stored, per stream shard", labels=["shard"])
        pending = GaugeMetricFamily("loomi_stream_pending", "Inbound entries handed to an ingest worker and not yet acked", labels=["shard"])
        age = GaugeMetricFamily("loomi_stream_oldest_age_seconds", "Age of the oldest inbound entry not yet stored: the queue's lag", labels=["shard"])
        for shard, info in sorted(facts.streams.items()):
            depth.add_metric([shard], info["depth"])
            pending.add_metric([shard], info["pending"])
            age.add_metric([shard], info["oldest_age_seconds"])
        lag = GaugeMetricFamily(
            "loomi_ingest_lag_seconds", "Largest event-to-store delay in the last batch of any account, per platform", labels=["platform"]
        )
        for platform, seconds in sorted(facts.lag_seconds.items()):
            lag.add_metric([platform], seconds)
        yield from (depth, pending, age, lag)
        yield GaugeMetricFamily("loomi_dead_letters", "Events in the dead-letter list now (loomi dlq list)", value=facts.dead_letters)
        yield GaugeMetricFamily("loomi_workers_alive", "Workers whose registration has not lapsed", value=facts.workers)

    def _listeners(self, facts: Facts) -> Iterator[Metric]:
        family = GaugeMetricFamily("loomi_listeners", "Accounts by platform and listener state", labels=["platform", "state"])
        for (platform, state), n in sorted(facts.listeners.items()):
            family.add_metric([platform, state], n)
        yield family

    def _totals(self, facts: Facts) -> Iterator[Metric]:
        described = {
            "ingested": ("loomi_ingested_messages", "Inbound events stored, by platform (the whole hub, since Redis was emptied)"),
            "dead_letter": ("loomi_dead_lettered_events", "Events ingest could not read or store, by platform"),
            "listener_failure": ("loomi_listener_failures", "Listener runs that ended in an error (then backed off), by platform"),
            "send_failure": ("loomi_send_failures", "Outbound messages that ended failed, by platform"),
        }
        for kind, (name, text) in described.items():
            family = CounterMetricFamily(name, text, labels=["platform"])
            for platform, n in sorted(facts.totals.get(kind, {}).items()):
                family.add_metric([platform], n)
            yield family

    def _ai(self, facts: Facts) -> Iterator[Metric]:
        requests = CounterMetricFamily("loomi_ai_requests", "AI calls recorded in the ledger", labels=["provider", "model"])
        tokens = CounterMetricFamily("loomi_ai_tokens", "AI tokens recorded in the ledger", labels=["provider", "model", "direction"])
        cost = CounterMetricFamily("loomi_ai_cost_usd", "AI cost recorded in the ledger, USD at configured prices", labels=["provider", "model"])
        for item in facts.ai:
            labels = [item["provider"], item["model"]]
            requests.add_metric(labels, item["requests"])
            tokens.add_metric(labels + ["input"], item["input_tokens"])
            tokens.add_metric(labels + ["output"], item["output_tokens"])
            cost.add_metric(labels, item["cost_usd"])
        yield from (requests, tokens, cost)

    def _process(self) -> Iterator[Metric]:
        worker: Any = self.hub.extras.get("worker")
        ingested = CounterMetricFamily("loomi_process_ingested_entries", "Stream entries this process's ingest worker handled")
        ingested.add_metric([], worker.ingestor.processed if worker else 0)
        yield ingested
        yield GaugeMetricFamily(
            "loomi_process_listeners", "Listeners this process's worker runs now", value=len(worker.supervisor.running) if worker else 0
        )


def _registry(hub: Hub) -> tuple[CollectorRegistry, HubCollector]:
    """One registry per Hub (not the library's global one): tests open several hubs."""
    found = hub.extras.get("metrics.registry")
    if found is None:
        registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        collector = HubCollector(hub)
        registry.register(collector)
        found = hub.extras["metrics.registry"] = (registry, collector)
    return found


async def metrics(request: Request) -> Response:
    hub = hub_of(request)
    check_access(request, hub)
    registry, collector = _registry(hub)
    collector.facts = await cluster_facts(hub).get(hub)
    return Response(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})


routes = [Route("/metrics", metrics, methods=["GET"], include_in_schema=False)]
