"""Product analytics (PostHog) and tracing (OpenTelemetry) for the portal-domains pipeline.

`Analytics` is the one way to send a PostHog event: event names are a `Literal`
so a typo is a type error, and it does nothing when no API key is configured
(the embedded default). It owns its own `posthog.Posthog` client, never the
SDK's module-level one, and is built in an entrypoint and passed down.

`setup_tracing` builds a `TracerProvider` and returns it without installing it
globally: callers hand `tracer(provider)` to what needs it (for instance
temporalio's `TracingInterceptor`), so tests and embedded runs can build as
many providers as they like. `span` opens a span carrying the attribute keys
shared across the pipeline (`tenant_id`, `domain`, `stage`, `env`) and records
an exception that escapes it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Literal, TypedDict, Unpack, get_args

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Span, Tracer
from posthog import Posthog

logger = logging.getLogger(__name__)

EventName = Literal[
    "portal_domain.requested",
    "portal_domain.dns_verified",
    "portal_domain.dns_failed",
    "portal_domain.cert_ready",
    "portal_domain.cert_failed",
    "portal_domain.activated",
    "portal_domain.disabled",
    "portal_domain.reconciled",
    "portal_domain.cname_lost",
    # Failures, sent like the successes.
    "portal_domain.reconcile_failed",
    "portal_domain.deploy_failed",
    "portal_domain.https_failed",
]
EVENT_NAMES: frozenset[str] = frozenset(get_args(EventName))

TRACER_NAME = "portal_domains"
SPAN_ATTRIBUTE_KEYS = ("tenant_id", "domain", "stage", "env")
_OTLP_TRACES_PATH = "/v1/traces"


class Analytics:
    """PostHog events for portal domains; a no-op without an API key.

    Events are queued and sent by the SDK's background thread; `flush()` blocks
    until the queue is delivered (or `timeout_seconds` pass) and `shutdown()`
    delivers what is left and stops the thread. A failed upload is logged and
    never raised: analytics must not break the pipeline.
    """

    def __init__(
        self,
        api_key: str | None,
        host: str,
        *,
        flush_at: int = 100,
        flush_interval_seconds: float = 5.0,
        timeout_seconds: float = 10.0,
        max_retries: int = 3,
        gzip: bool = True,
    ) -> None:
        self.host = host
        self._client: Posthog | None = None
        if api_key:
            self._client = Posthog(
                api_key,
                host=host,
                flush_at=flush_at,
                flush_interval=flush_interval_seconds,
                timeout=timeout_seconds,
                max_retries=max_retries,
                gzip=gzip,
                # Explicit, so the POSTHOG_CAPTURE_MODE variable cannot switch the protocol.
                capture_mode="v0",
                disable_geoip=True,
                enable_exception_autocapture=False,
                on_error=self._on_error,
            )

    @property
    def enabled(self) -> bool:
        return self._client is not None

    def capture(
        self,
        event: EventName,
        *,
        distinct_id: str,
        properties: Mapping[str, Any] | None = None,
        timestamp: dt.datetime | None = None,
    ) -> None:
        """Queue one event. `distinct_id` is who it is about (the tenant id)."""
        if event not in EVENT_NAMES:
            raise ValueError(f"unknown analytics event {event!r}")
        if self._client is None:
            return
        self._client.capture(
            event,
            distinct_id=distinct_id,
            properties=dict(properties or {}),
            timestamp=timestamp,
        )

    def flush(self, timeout_seconds: float | None = 10.0) -> None:
        """Block until queued events are sent, or `timeout_seconds` pass (None: no limit)."""
        if self._client is not None:
            self._client.flush(timeout_seconds)

    def shutdown(self) -> None:
        """Send what is queued and stop the client; it cannot be used afterwards."""
        if self._client is not None:
            self._client.shutdown()
            self._client = None

    def __enter__(self) -> Analytics:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    def _on_error(self, error: Exception, batch: object) -> None:
        count = len(batch) if isinstance(batch, list) else "some"
        logger.warning("could not send %s analytics events to %s: %s", count, self.host, error)


# -- tracing ----------------------------------------------------------------------


class SpanAttributes(TypedDict, total=False):
    tenant_id: str
    domain: str
    stage: str
    env: str


def _traces_url(endpoint: str) -> str:
    """OTEL_EXPORTER_OTLP_ENDPOINT is a base URL; the HTTP exporter wants the signal path."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(_OTLP_TRACES_PATH) else endpoint + _OTLP_TRACES_PATH


def setup_tracing(
    *,
    service_name: str,
    otlp_endpoint: str | None,
    exporter: SpanExporter | None = None,
    environment: str | None = None,
    otlp_timeout_seconds: float = 10.0,
) -> TracerProvider:
    """A tracer provider exporting over OTLP/HTTP when `otlp_endpoint` is set.

    `exporter` is an extra exporter fed synchronously as spans end (tests use an
    `InMemorySpanExporter`). The provider is not made global; call
    `provider.shutdown()` at exit to send what is still batched.
    """
    attributes: dict[str, str] = {"service.name": service_name}
    if environment:
        attributes["deployment.environment.name"] = environment
    provider = TracerProvider(resource=Resource.create(attributes))
    if otlp_endpoint:
        provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=_traces_url(otlp_endpoint), timeout=otlp_timeout_seconds)
            )
        )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def tracer(provider: TracerProvider, name: str = TRACER_NAME) -> Tracer:
    return provider.get_tracer(name)


@contextmanager
def span(tracer: Tracer, name: str, **attributes: Unpack[SpanAttributes]) -> Iterator[Span]:
    """A current span with our attribute keys; an escaping exception is recorded on it."""
    values = {key: str(value) for key, value in attributes.items() if value is not None}
    with tracer.start_as_current_span(
        name, attributes=values, record_exception=True, set_status_on_exception=True
    ) as current:
        yield current
