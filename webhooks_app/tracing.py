"""OpenTelemetry traces: one trace per event, from the HTTP receipt to its last attempt.

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set (then spans go to that OTLP/HTTP
collector in batches). When on:
- the receipt is the Flask request's SERVER span (opentelemetry-instrumentation-flask);
- its context is written into the meta of the event's RQ job (`TRACE_META_KEY`), and
  every attempt's span (`webhook.attempt`) continues it, so the retries scheduled by
  an attempt continue the same trace too;
- every MercadoPago and GoHighLevel call is a CLIENT span under the attempt;
- the event's id, webhook id and payment id are attributes of the receipt and attempt
  spans, set wherever the log fields are bound (logging_setup.event_context).

Each app has its own TracerProvider (no process-global state), so the tests can give
an app an in-memory exporter (`OTEL_SPAN_EXPORTER`) and another app none. Without a
provider every call here is a no-op costing a dictionary lookup.
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from flask import Flask, current_app, has_app_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

logger = logging.getLogger(__name__)

TRACER_NAME = "webhooks_app"
# Where a job's meta carries the W3C trace context (`traceparent`) of its event's trace.
TRACE_META_KEY = "otel"
# The event fields of logging_setup that become span attributes, and their names.
SPAN_ATTRIBUTES = {
    "event_id": "webhook.event_id",
    "webhook_id": "webhook.id",
    "payment_id": "mercadopago.payment_id",
    "attempt": "webhook.attempt",
}
# Probes and scrapes are not events: no trace for them.
EXCLUDED_URLS = "healthz,readyz,metrics"
_NO_OP = trace.NoOpTracer()


def init_app(app: Flask) -> None:
    """Give the app a tracer when OTEL_EXPORTER_OTLP_ENDPOINT (or a test exporter) is set."""
    exporter = app.config.get("OTEL_SPAN_EXPORTER")
    endpoint = app.config.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if exporter is None and not endpoint:
        return
    resource = Resource.create({"service.name": app.config["OTEL_SERVICE_NAME"]})
    provider = TracerProvider(resource=resource)
    if exporter is not None:  # tests: spans are exported as each one ends
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        # Imported only when used: the exporter pulls in protobuf.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        otlp = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(otlp))
        # The batch still queued is sent when the process exits normally.
        atexit.register(provider.shutdown)
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    FlaskInstrumentor().instrument_app(
        app, tracer_provider=provider, excluded_urls=EXCLUDED_URLS, enable_commenter=False
    )
    app.extensions["tracer_provider"] = provider
    app.extensions["tracer"] = provider.get_tracer(TRACER_NAME)
    logger.info("tracing on: spans go to %s", endpoint or type(exporter).__name__)


def tracer() -> trace.Tracer:
    """The current app's tracer; a no-op one outside an app or when tracing is off."""
    if not has_app_context():
        return _NO_OP
    return current_app.extensions.get("tracer", _NO_OP)


def enabled() -> bool:
    return tracer() is not _NO_OP


def current_carrier() -> dict[str, str]:
    """The current trace context as W3C headers (`traceparent`), {} when not tracing."""
    if not enabled():
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def job_meta(carrier: Mapping[str, str] | None) -> dict[str, Any] | None:
    """RQ job meta carrying a trace context (None when there is none to carry)."""
    return {TRACE_META_KEY: dict(carrier)} if carrier else None


def set_event_attributes(fields: Mapping[str, Any]) -> None:
    """Put the event fields (event_id, webhook_id, payment_id, attempt) on the current span."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    for field, value in fields.items():
        name = SPAN_ATTRIBUTES.get(field)
        if name is not None and value is not None:
            span.set_attribute(name, value if isinstance(value, int) else str(value))


@contextmanager
def attempt_span(event_id: int) -> Iterator[None]:
    """The span of one RQ job's attempt, continuing the trace its job's meta carries."""
    if not enabled():
        yield
        return
    from rq import get_current_job

    job = get_current_job()
    carrier = (job.meta or {}).get(TRACE_META_KEY) if job is not None else None
    parent = propagate.extract(carrier) if carrier else None
    attributes = {SPAN_ATTRIBUTES["event_id"]: event_id}
    if job is not None:
        attributes["messaging.message.id"] = job.id
    with tracer().start_as_current_span(
        "webhook.attempt", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
    ):
        yield


@contextmanager
def client_span(service: str, method: str, path: str) -> Iterator[trace.Span]:
    """A CLIENT span around one MercadoPago or GoHighLevel call; errors mark it failed."""
    with tracer().start_as_current_span(
        f"{service} {method}",
        kind=SpanKind.CLIENT,
        attributes={"peer.service": service, "http.request.method": method, "url.path": path},
        record_exception=False,  # our typed errors carry response bodies: the status says it
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except Exception as exc:
            status = getattr(exc, "status_code", None)
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


def record_response_status(status: int) -> None:
    """The HTTP status of the call the current CLIENT span is about."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("http.response.status_code", status)
