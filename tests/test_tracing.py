"""OpenTelemetry: one trace per event, from the HTTP receipt through every attempt and API call.

An app gets an in-memory exporter (`OTEL_SPAN_EXPORTER`); the trace context travels
in each RQ job's meta, through the real queue, rq-scheduler and a SimpleWorker.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from rq.job import Job

from webhooks_app import tracing
from webhooks_app.queueing import get_redis, job_id

from conftest import drain, make_app, post_webhook, run_worker

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def traced(app, sandbox, exporter):
    """An app that records its spans in memory (the `app` fixture emptied the database)."""
    traced_app = make_app(sandbox, OTEL_SPAN_EXPORTER=exporter)
    with traced_app.app_context():
        yield traced_app


def by_name(spans, name: str) -> list:
    return [span for span in spans if span.name == name]


def test_off_unless_an_endpoint_is_set(app, client, sandbox):
    assert app.config["OTEL_EXPORTER_OTLP_ENDPOINT"] is None
    assert not tracing.enabled()
    payment = sandbox.state.add_payment(status="approved")
    event_id = post_webhook(client, payment["id"]).json["event_id"]
    job = Job.fetch(job_id(event_id, 1), connection=get_redis(app))
    assert tracing.TRACE_META_KEY not in job.meta


def test_one_trace_from_the_receipt_through_a_retry_and_every_api_call(
    traced, sandbox, exporter
):
    payment = sandbox.state.add_payment(status="approved", payer={"email": "ana@example.com"})
    sandbox.state.set_fault("mercadopago", payment["id"], status=500, times=1)
    response = post_webhook(traced.test_client(), payment["id"])
    event_id = response.json["event_id"]
    drain(traced)  # attempt 1 fails (500), rq-scheduler brings attempt 2 a second later

    spans = exporter.get_finished_spans()
    [receipt] = [span for span in spans if span.kind == SpanKind.SERVER]
    trace_id = receipt.context.trace_id
    assert all(span.context.trace_id == trace_id for span in spans), [s.name for s in spans]
    assert receipt.attributes["webhook.event_id"] == event_id
    assert receipt.attributes["mercadopago.payment_id"] == str(payment["id"])
    assert receipt.attributes["webhook.id"].startswith("mp:")

    first, second = sorted(by_name(spans, "webhook.attempt"), key=lambda span: span.start_time)
    assert first.parent.span_id == receipt.context.span_id
    assert second.parent.span_id == first.context.span_id  # scheduled by the failed attempt
    assert [first.attributes["webhook.attempt"], second.attributes["webhook.attempt"]] == [1, 2]
    assert second.attributes["mercadopago.payment_id"] == str(payment["id"])

    failed_read, read = sorted(by_name(spans, "mercadopago GET"), key=lambda s: s.start_time)
    assert failed_read.parent.span_id == first.context.span_id
    assert failed_read.status.status_code == StatusCode.ERROR
    assert failed_read.attributes["http.response.status_code"] == 500
    assert read.parent.span_id == second.context.span_id
    assert read.attributes["http.response.status_code"] == 200
    assert read.attributes["url.path"] == f"/v1/payments/{payment['id']}"
    ghl = by_name(spans, "gohighlevel POST")
    assert [span.attributes["url.path"].rsplit("/", 1)[-1] for span in ghl] == ["upsert", "tags"]
    assert all(span.parent.span_id == second.context.span_id for span in ghl)
    assert all(span.kind == SpanKind.CLIENT for span in ghl + [read])


def test_requests_stored_in_one_batch_keep_their_own_traces(traced, sandbox, exporter):
    """Group commit: another request's thread enqueues the batch; each job carries its own."""
    payments = [sandbox.state.add_payment(status="approved") for _ in range(12)]
    client = traced.test_client()
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda p: post_webhook(client, p["id"]), payments))
    receipts = {
        span.attributes["webhook.event_id"]: span.context.trace_id
        for span in exporter.get_finished_spans()
        if span.kind == SpanKind.SERVER
    }
    assert len(set(receipts.values())) == len(payments)
    for answer in answers:
        event_id = answer.json["event_id"]
        job = Job.fetch(job_id(event_id, 1), connection=get_redis(traced))
        traceparent = job.meta[tracing.TRACE_META_KEY]["traceparent"]
        assert int(traceparent.split("-")[1], 16) == receipts[event_id]

    run_worker(traced)
    attempts = by_name(exporter.get_finished_spans(), "webhook.attempt")
    assert {span.attributes["webhook.event_id"]: span.context.trace_id for span in attempts} == (
        receipts
    )


def test_probes_are_not_traced(traced, exporter):
    assert traced.test_client().get("/healthz").status_code == 200
    assert exporter.get_finished_spans() == ()


def test_spans_reach_an_otlp_collector_at_the_configured_endpoint(app, sandbox):
    """OTEL_EXPORTER_OTLP_ENDPOINT on: spans are POSTed as OTLP/HTTP protobuf to <it>/v1/traces."""
    received: list[tuple[str, str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_port}"
        exported = make_app(sandbox, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)
        with exported.app_context():
            payment = sandbox.state.add_payment(status="approved")
            assert post_webhook(exported.test_client(), payment["id"]).status_code == 200
            assert exported.extensions["tracer_provider"].force_flush(10_000)
    finally:
        server.shutdown()
    [(path, content_type, body)] = received
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    request = ExportTraceServiceRequest.FromString(body)
    [span] = [s for r in request.resource_spans for ss in r.scope_spans for s in ss.spans]
    assert span.name == "POST /webhooks/mp" and span.kind == span.SPAN_KIND_SERVER
