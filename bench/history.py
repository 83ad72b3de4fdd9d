"""Scale with history: ingestion and the events list API with 10^4 and 10^6 stored events.

    python bench/history.py [--db postgresql] [--sizes 10000,1000000] [--check]

For each size (in increasing order, one database filled incrementally with
COPY on PostgreSQL / executemany on SQLite, then ANALYZE):

- the list API, `GET /api/webhook-events` (first page) and
  `?status=failed&type=payment` (a filtered page), `--list-requests` sequential
  requests each, alternating with `GET /healthz` on the same server (the
  in-run ceiling: what a request costs without the query);
- ingestion: `POST /webhooks/mp` closed loop (wrk), in slices alternating with
  the bare-Flask ceiling (bench/bare_app.py), as bench/ingest.py does; the rows
  it adds are deleted afterwards so the next size starts exact;
- on PostgreSQL, EXPLAIN ANALYZE of the two list queries' SQL.

The filler rows look like real history: ~93% success (linked to a payment), 3%
ignored, 1.5% failed, 0.5% pending, 90% `payment`, received over 180 days,
bodies and headers of a real notification's size.
Goal (the issue's): no more than 20% slower at the largest size than at the
smallest, for each figure. `--check` exits 1 when one is missed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sys
import time
from datetime import datetime, timedelta

from common import (
    API_TOKEN,
    Loader,
    RequestFactory,
    Session,
    add_common_arguments,
    app_env,
    base_env,
    comma_list,
    db_kind,
    environment_note,
    log,
    percentile,
    sql_scalar,
    table,
    wrk_available,
)

SLOWDOWN_GOAL = 1.2
QUERIES = {
    "first page": "/api/webhook-events",
    "failed payments": "/api/webhook-events?status=failed&type=payment",
}
COLUMNS = (
    "webhook_id", "source", "type", "action", "resource_id", "payload", "raw_body", "headers",
    "query", "status", "attempts", "attempts_at_replay", "last_error", "next_retry_at",
    "locked_until", "received_at", "processed_at", "updated_at", "payment_id",
)  # fmt: skip
PAYMENT_COLUMNS = (
    "mp_payment_id", "status", "status_detail", "amount", "currency", "payer_email",
    "external_reference", "mp_date_last_updated", "raw", "ghl_contact_id", "tags_applied",
    "created_at", "updated_at",
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="postgresql", help="postgresql, sqlite or both")
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--list-requests", type=int, default=100, help="per query and size")
    parser.add_argument("--slices", type=int, default=3, help="ingestion slices per size")
    parser.add_argument("--slice", type=float, default=3.0, help="seconds per slice")
    parser.add_argument("--connections", type=int, default=32)
    add_common_arguments(parser)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--check", action="store_true", help="exit 1 if a goal is missed")
    args = parser.parse_args(argv)
    sizes = sorted(int(float(x)) for x in args.sizes.split(","))
    kinds = comma_list(args.db)

    results: dict[str, dict[int, dict]] = {}
    plans: dict[str, dict[int, dict[str, str]]] = {}
    with Session("history", args.redis_url, keep=args.keep, tree=args.tree) as session:
        note = environment_note()
        log(note)
        os.environ.update(app_env(session, "sqlite://", LOG_LEVEL="WARNING"))
        loader = Loader(RequestFactory(), session.tmp, args.connections, wrk_available())
        bare = session.gunicorn("bare", "bare_app:app", base_env(session))
        loader.closed(bare, "warm-up", 1.0)
        for kind in kinds:
            url = session.database(kind)
            results[kind], plans[kind] = {}, {}
            filler = Filler(url)
            for size in sizes:
                log(f"{kind}: filling webhook_events to {size:,} rows")
                started = time.monotonic()
                filler.fill_to(size)
                log(f"{kind}: {size:,} rows ({time.monotonic() - started:.0f}s)")
                web = session.gunicorn(f"web-{kind}-{size}", "wsgi:app", app_env(session, url))
                row: dict = {"rows": sql_scalar(url, "SELECT count(*) FROM webhook_events")}
                log(f"{kind} @ {size:,}: list queries")
                row.update(measure_lists(web.url, args.list_requests))
                max_id = sql_scalar(url, "SELECT max(id) FROM webhook_events")
                log(f"{kind} @ {size:,}: ingestion (paired with the ceiling)")
                result, ceiling = loader.paired(
                    bare, web, "service", args.slices, args.slice, estimate=6000.0
                )
                row.update(
                    {
                        "ingest req/s": result.rate,
                        "ceiling req/s": ceiling.rate,
                        "ingest x ceiling": result.rate / ceiling.rate,
                        "ingest p50 ms": result.p50,
                        "ingest errors": result.errors,
                    }
                )
                session.stop(web)
                filler.delete_after(max_id)
                session.redis().flushdb()
                if db_kind(url) == "postgresql":
                    plans[kind][size] = explain(url)
                results[kind][size] = row

    print(f"# History benchmark\n\n{note}\n")
    print(
        f"List queries: {args.list_requests} sequential requests each (new connection each, "
        "as gunicorn's sync workers close them), alternating with GET /healthz. Ingestion: "
        f"wrk, {args.connections} connections, {args.slices} x {args.slice:g}s slices "
        "alternating with the bare-Flask ceiling.\n"
    )
    goals = []
    for kind, by_size in results.items():
        cols = ["figure", *[f"{size:,} rows" for size in by_size], "largest / smallest"]
        figures = [
            "healthz p50 ms",
            *[f"{name} {stat}" for name in QUERIES for stat in ("p50 ms", "p99 ms")],
            *[f"{name} p50 - healthz p50 ms" for name in QUERIES],
            "ingest req/s",
            "ceiling req/s",
            "ingest x ceiling",
            "ingest p50 ms",
            "ingest errors",
        ]
        first, last = by_size[sizes[0]], by_size[sizes[-1]]
        rows = []
        for figure in figures:
            values = [by_size[size].get(figure) for size in by_size]
            ratio = (
                last[figure] / first[figure]
                if isinstance(first.get(figure), float) and first[figure]
                else None
            )
            rows.append([figure, *values, ratio])
        print(table(cols, rows, title=f"## {kind}"))
        for name in QUERIES:
            slowdown = last[f"{name} p50 ms"] / first[f"{name} p50 ms"]
            goals.append((kind, f"list '{name}' p50", slowdown))
        goals.append(
            (kind, "ingestion x ceiling", first["ingest x ceiling"] / last["ingest x ceiling"])
        )
    print(
        table(
            ("db", f"figure: slowdown {sizes[-1]:,} vs {sizes[0]:,} rows", "slowdown", "met"),
            [(k, f, s, "yes" if s <= SLOWDOWN_GOAL else "NO") for k, f, s in goals],
            title=f"## goals (slowdown <= {SLOWDOWN_GOAL})",
        )
    )
    for kind, by_size in plans.items():
        for size, by_query in by_size.items():
            for name, plan in by_query.items():
                print(f"### EXPLAIN ANALYZE {kind} @ {size:,} rows: {name}\n\n```\n{plan}\n```\n")
    if args.json:
        args.json.write_text(json.dumps({"note": note, "results": results, "plans": plans},
                                        indent=2, default=str))  # fmt: skip
    return 1 if args.check and any(s > SLOWDOWN_GOAL for _, _, s in goals) else 0


def measure_lists(base_url: str, count: int) -> dict:
    """Sequential GETs of each list query and of /healthz, interleaved."""
    host, port = base_url.removeprefix("http://").split(":")
    paths = {"healthz": "/healthz", **QUERIES}
    samples: dict[str, list[float]] = {name: [] for name in paths}
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    for round_number in range(count + 3):
        for name, path in paths.items():
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            started = time.perf_counter()
            conn.request("GET", path, headers=headers)
            answer = conn.getresponse()
            body = answer.read()
            elapsed = (time.perf_counter() - started) * 1000
            conn.close()
            if answer.status != 200:
                raise RuntimeError(f"GET {path}: {answer.status} {body[:300]!r}")
            if round_number >= 3:  # the first rounds warm the caches
                samples[name].append(elapsed)
    out = {}
    for name, values in samples.items():
        values.sort()
        out[f"{name} p50 ms"] = percentile(values, 50)
        out[f"{name} p99 ms"] = percentile(values, 99)
    for name in QUERIES:
        out[f"{name} p50 - healthz p50 ms"] = out[f"{name} p50 ms"] - out["healthz p50 ms"]
    return out


class Filler:
    """Adds realistic history rows (events and the payments they point to)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.random = random.Random(6)
        self.now = datetime.utcnow().replace(microsecond=0)  # noqa: DTZ003 - naive UTC, as stored
        self.serial = sql_scalar(url, "SELECT count(*) FROM webhook_events")

    def fill_to(self, size: int) -> None:
        missing = size - sql_scalar(self.url, "SELECT count(*) FROM webhook_events")
        chunk = 100_000
        while missing > 0:
            n = min(chunk, missing)
            self._add(n)
            missing -= n
        self._analyze()

    def _add(self, n: int) -> None:
        base = self.serial
        self.serial += n
        # One payment per two events (a payment is usually notified more than once).
        payment_rows = [self._payment(base + i) for i in range(0, n, 2)]
        first_payment_id = self._insert("payments", PAYMENT_COLUMNS, payment_rows)
        events = [self._event(base + i, first_payment_id + i // 2) for i in range(n)]
        self._insert("webhook_events", COLUMNS, events)

    def _payment(self, i: int) -> tuple:
        when = self.now - timedelta(seconds=self.random.randrange(180 * 86400))
        raw = {
            "id": 10**10 + i,
            "status": "approved",
            "status_detail": "accredited",
            "transaction_amount": 199.9,
            "currency_id": "BRL",
            "date_last_updated": when.isoformat() + ".000-04:00",
            "payer": {"email": f"buyer{i}@example.com", "first_name": "Ana", "last_name": "Lima"},
            "external_reference": f"order-{i}",
            "payment_method_id": "pix",
        }
        return (
            str(10**10 + i), "approved", "accredited", "199.90", "BRL", f"buyer{i}@example.com",
            f"order-{i}", when, json.dumps(raw), f"contact{i:012d}",
            json.dumps(["mp-payment-approved"]), when, when,
        )  # fmt: skip

    def _event(self, i: int, payment_id: int) -> tuple:
        r = self.random.random()
        status = (
            "success" if r < 0.93 else "ignored" if r < 0.96 else "failed" if r < 0.975
            else "pending" if r < 0.98 else "success"
        )  # fmt: skip
        kind = self.random.random()
        event_type = (
            "payment" if kind < 0.9 else "merchant_order" if kind < 0.97
            else "subscription_preapproval"
        )  # fmt: skip
        if event_type != "payment" and status == "success":
            status = "ignored"
        received = self.now - timedelta(seconds=self.random.randrange(180 * 86400))
        resource = str(10**10 + i - i % 2)
        body = json.dumps(
            {
                "id": 10**11 + i,
                "live_mode": True,
                "type": event_type,
                "date_created": received.isoformat() + ".000-04:00",
                "user_id": "123456789",
                "api_version": "v1",
                "action": "payment.updated",
                "data": {"id": resource},
            }  # fmt: skip
        )
        headers = json.dumps(
            {
                "content-type": "application/json",
                "user-agent": "MercadoPago WebHook v1.0 payment",
                "x-request-id": f"{i:08x}-6a2c-4b1e-9d3f-5e7a8c9b0d1e",
                "x-signature": f"ts={int(received.timestamp())},v1={'ab' * 32}",
            }
        )
        query = json.dumps({"data.id": resource, "type": event_type})
        failed = status == "failed"
        return (
            f"mp:{10**11 + i}", "webhook", event_type, "payment.updated", resource, body, body,
            headers, query, status, 4 if failed else 1, 0,
            "HTTPError: 502 Bad Gateway from GoHighLevel" if failed else None,
            received + timedelta(minutes=1) if status == "pending" else None, None, received,
            None if status == "pending" else received + timedelta(seconds=2),
            received + timedelta(seconds=2),
            payment_id if status == "success" else None,
        )  # fmt: skip

    def _insert(self, name: str, columns: tuple, rows: list[tuple]) -> int:
        """Bulk insert; return the id the first row got (ids are assigned in order)."""
        if db_kind(self.url) == "postgresql":
            import psycopg

            with psycopg.connect(self.url) as conn:
                before = conn.execute(f"SELECT coalesce(max(id), 0) FROM {name}").fetchone()[0]
                with conn.cursor() as cur:
                    with cur.copy(f"COPY {name} ({', '.join(columns)}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                first = conn.execute(
                    f"SELECT min(id) FROM {name} WHERE id > %s", (before,)
                ).fetchone()[0]
            return first
        import sqlite3

        conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=60)
        try:
            before = conn.execute(f"SELECT coalesce(max(id), 0) FROM {name}").fetchone()[0]
            marks = ", ".join("?" for _ in columns)
            with conn:
                conn.executemany(
                    f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({marks})",
                    [tuple(_sqlite(v) for v in row) for row in rows],
                )
            return before + 1
        finally:
            conn.close()

    def _analyze(self) -> None:
        if db_kind(self.url) == "postgresql":
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE webhook_events")
                conn.execute("VACUUM ANALYZE payments")
        else:
            import sqlite3

            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=60)
            conn.execute("ANALYZE")
            conn.close()

    def delete_after(self, max_id: int) -> None:
        """Remove the rows the ingestion phase added."""
        if db_kind(self.url) == "postgresql":
            import psycopg

            with psycopg.connect(self.url) as conn:
                conn.execute("DELETE FROM webhook_events WHERE id > %s", (max_id,))
        else:
            import sqlite3

            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=60)
            with conn:
                conn.execute("DELETE FROM webhook_events WHERE id > ?", (max_id,))
            conn.close()


def _sqlite(value: object) -> object:
    return value.isoformat(sep=" ") if isinstance(value, datetime) else value


def explain(url: str) -> dict[str, str]:
    """EXPLAIN ANALYZE of the SQL the list endpoint really runs, captured from the code.

    Each query is requested once through a Flask test client of the measured code
    (in this process); every statement it sends is recorded with its parameters,
    then explained (SELECTs) on the same database.
    """
    import psycopg
    from sqlalchemy import event

    from webhooks_app import create_app
    from webhooks_app.config import normalise_database_url
    from webhooks_app.extensions import db

    app = create_app("development", {"SQLALCHEMY_DATABASE_URI": normalise_database_url(url)})
    out = {}
    with app.app_context():
        captured: list[tuple[str, object]] = []

        def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
            captured.append((statement, parameters))

        event.listen(db.engine, "before_cursor_execute", record)
        client = app.test_client()
        for name, path in QUERIES.items():
            captured.clear()
            answer = client.get(path, headers={"Authorization": f"Bearer {API_TOKEN}"})
            assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
            texts = [f"{len(captured)} statement(s) for GET {path}"]
            with psycopg.connect(url) as conn:
                for statement, parameters in captured:
                    if not statement.lstrip().upper().startswith("SELECT"):
                        texts.append(statement)
                        continue
                    plan = conn.execute(
                        "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters or None
                    ).fetchall()
                    texts.append(
                        f"{statement}\n-- parameters: {parameters}\n"
                        + "\n".join(line for (line,) in plan)
                    )
            out[name] = "\n\n".join(texts)
        event.remove(db.engine, "before_cursor_execute", record)
        db.session.remove()
    return out


if __name__ == "__main__":
    sys.exit(main())
