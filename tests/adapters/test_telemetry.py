"""PostHog events through a local capture server; spans through in-memory and OTLP exporters."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import cast

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from adapters.telemetry import (
    Analytics,
    EventName,
    setup_tracing,
    span,
    tracer,
)
from tests.support.capture_server import CaptureServer

TENANT = "6f1c2a4e-0000-4000-8000-00000000acme"


@pytest.fixture
def capture_server() -> Iterator[CaptureServer]:
    with CaptureServer() as server:
        yield server


@pytest.fixture
def analytics(capture_server: CaptureServer) -> Iterator[Analytics]:
    client = Analytics("phc_test_key", capture_server.url, timeout_seconds=2.0, max_retries=0)
    yield client
    client.shutdown()


# -- analytics --------------------------------------------------------------------


def test_captured_events_arrive_with_their_names_and_properties_after_a_flush(
    analytics: Analytics, capture_server: CaptureServer
) -> None:
    analytics.capture(
        "portal_domain.requested",
        distinct_id=TENANT,
        properties={"domain": "portal.acme.com", "env": "staging"},
    )
    analytics.capture(
        "portal_domain.dns_failed", distinct_id=TENANT, properties={"reason": "nxdomain"}
    )

    analytics.flush(timeout_seconds=5.0)

    events = capture_server.events()
    assert [e["event"] for e in events] == ["portal_domain.requested", "portal_domain.dns_failed"]
    assert {e["distinct_id"] for e in events} == {TENANT}
    assert events[0]["properties"]["domain"] == "portal.acme.com"
    assert events[0]["properties"]["env"] == "staging"
    assert events[1]["properties"]["reason"] == "nxdomain"
    request = capture_server.requests[0]
    assert request.path == "/batch/"
    assert request.headers.get("content-encoding") == "gzip"
    assert request.json()["api_key"] == "phc_test_key"


def test_shutdown_delivers_events_that_were_never_flushed(capture_server: CaptureServer) -> None:
    client = Analytics("phc_test_key", capture_server.url, timeout_seconds=2.0, max_retries=0)
    client.capture("portal_domain.activated", distinct_id=TENANT, properties={})

    client.shutdown()

    assert [e["event"] for e in capture_server.events()] == ["portal_domain.activated"]


def test_without_an_api_key_nothing_is_sent(capture_server: CaptureServer) -> None:
    client = Analytics(None, capture_server.url)

    client.capture("portal_domain.requested", distinct_id=TENANT, properties={"x": 1})
    client.flush()
    client.shutdown()

    assert not client.enabled
    assert capture_server.requests == []


def test_an_event_name_outside_the_catalogue_is_refused(analytics: Analytics) -> None:
    with pytest.raises(ValueError, match="unknown analytics event"):
        analytics.capture(cast(EventName, "portal_domain.typo"), distinct_id=TENANT)


def test_an_unreachable_analytics_host_is_logged_and_never_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    client = Analytics("phc_test_key", closed, timeout_seconds=0.5, max_retries=0)

    with caplog.at_level(logging.WARNING, logger="adapters.telemetry"):
        client.capture("portal_domain.reconciled", distinct_id=TENANT)
        client.flush(timeout_seconds=5.0)
        client.shutdown()

    assert any(
        r.name == "adapters.telemetry" and "could not send 1 analytics events" in r.getMessage()
        for r in caplog.records
    )


# -- tracing ----------------------------------------------------------------------


def test_spans_carry_the_pipeline_attributes_and_nest() -> None:
    exporter = InMemorySpanExporter()
    provider = setup_tracing(
        service_name="portal-domains-test", otlp_endpoint=None, exporter=exporter
    )
    spans_tracer = tracer(provider)

    with span(spans_tracer, "reconcile", env="staging", stage="pulumi_up"):
        with span(spans_tracer, "verify_cname", tenant_id=TENANT, domain="portal.acme.com"):
            pass
    provider.shutdown()

    inner, outer = exporter.get_finished_spans()
    assert inner.name == "verify_cname"
    assert dict(inner.attributes or {}) == {"tenant_id": TENANT, "domain": "portal.acme.com"}
    assert dict(outer.attributes or {}) == {"env": "staging", "stage": "pulumi_up"}
    assert inner.parent is not None
    assert inner.parent.span_id == outer.context.span_id
    assert outer.resource.attributes["service.name"] == "portal-domains-test"


def test_an_exception_escaping_a_span_is_recorded_and_marks_it_failed() -> None:
    exporter = InMemorySpanExporter()
    provider = setup_tracing(
        service_name="portal-domains-test", otlp_endpoint=None, exporter=exporter
    )

    with (
        pytest.raises(RuntimeError, match="CAA forbids"),
        span(tracer(provider), "check_caa", domain="portal.acme.com"),
    ):
        raise RuntimeError("CAA forbids letsencrypt.org")
    provider.shutdown()

    (finished,) = exporter.get_finished_spans()
    assert finished.status.status_code == StatusCode.ERROR
    assert [event.name for event in finished.events] == ["exception"]
    assert (finished.events[0].attributes or {})["exception.message"] == (
        "CAA forbids letsencrypt.org"
    )


def test_spans_are_exported_over_otlp_http_to_the_configured_endpoint(
    capture_server: CaptureServer,
) -> None:
    provider = setup_tracing(
        service_name="portal-domains-test",
        otlp_endpoint=capture_server.url,
        environment="staging",
        otlp_timeout_seconds=2.0,
    )

    with span(tracer(provider), "publish_gitops", env="staging"):
        pass
    provider.force_flush(timeout_millis=5000)
    provider.shutdown()

    (request,) = capture_server.wait_for_requests(1)
    assert request.path == "/v1/traces"
    export = ExportTraceServiceRequest.FromString(request.body)
    resource_spans = export.resource_spans[0]
    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert resource["service.name"] == "portal-domains-test"
    assert resource["deployment.environment.name"] == "staging"
    assert [s.name for s in resource_spans.scope_spans[0].spans] == ["publish_gitops"]


def test_setting_up_tracing_leaves_the_global_provider_alone() -> None:
    before = trace.get_tracer_provider()

    provider = setup_tracing(service_name="portal-domains-test", otlp_endpoint=None)
    provider.shutdown()

    assert trace.get_tracer_provider() is before
