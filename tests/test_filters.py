"""The shared filter parser, and keyset pagination, against the real database."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from factories import add_event, add_payment

from webhooks_app import filters
from webhooks_app.extensions import db
from webhooks_app.filters import (
    FilterError,
    parse_bool,
    parse_event_filter,
    parse_int,
    parse_payment_filter,
    parse_time,
)
from webhooks_app.models import EventStatus, WebhookEvent
from webhooks_app.pagination import capped_count, decode_cursor, encode_cursor, keyset_page

NOW = datetime(2026, 11, 29, 12, 0, 0)


def ids(event_filter) -> list[int]:
    return sorted(db.session.scalars(event_filter.query().with_only_columns(WebhookEvent.id)))


# -- parsing ------------------------------------------------------------------


def test_empty_values_mean_no_condition():
    event_filter = parse_event_filter({"status": "", "type": "  ", "q": None})
    assert event_filter.statuses == () and event_filter.type is None and event_filter.q is None
    assert event_filter.args == {}


def test_statuses_one_or_several():
    assert parse_event_filter({"status": "failed"}).statuses == ("failed",)
    assert parse_event_filter({"status": "failed, pending,failed"}).statuses == (
        "failed",
        "pending",
    )


@pytest.mark.parametrize("value", ["nope", "failed,nope", ",", "FAILED"])
def test_unknown_status_is_refused_with_the_valid_ones(value):
    with pytest.raises(FilterError) as error:
        parse_event_filter({"status": value})
    assert error.value.param == "status"
    assert "pending, processing, success, failed, ignored" in str(error.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-29T10:00:00", datetime(2026, 11, 29, 10, 0)),
        ("2026-11-29T10:00:00Z", datetime(2026, 11, 29, 10, 0)),
        ("2026-11-29T10:00:00.000-04:00", datetime(2026, 11, 29, 14, 0)),
        ("2026-11-29 10:30", datetime(2026, 11, 29, 10, 30)),
        ("2026-11-29", datetime(2026, 11, 29)),
        ("90m", NOW - timedelta(minutes=90)),
        ("2h", NOW - timedelta(hours=2)),
        ("7d", NOW - timedelta(days=7)),
        ("30s", NOW - timedelta(seconds=30)),
    ],
)
def test_times(value, expected):
    assert parse_time("since", value, now=NOW) == expected


def test_a_bare_until_date_includes_that_day():
    assert parse_time("until", "2026-11-29", now=NOW, end_of_day=True) == datetime(2026, 11, 30)


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01", "10x", "9999-12-31T23:59:59-23:00"])
def test_bad_times_name_the_parameter(value):
    with pytest.raises(FilterError, match="^until: must be an ISO 8601"):
        parse_event_filter({"until": value})


def test_the_last_day_there_is_cannot_overflow():
    with pytest.raises(FilterError):
        parse_event_filter({"until": "9999-12-31"})


def test_since_must_be_before_until():
    with pytest.raises(FilterError, match="since: must be earlier than until"):
        parse_event_filter({"since": "2026-11-29", "until": "2026-11-28"})


@pytest.mark.parametrize(
    ("args", "param"),
    [
        ({"q": "a\x00b"}, "q"),
        ({"q": "x" * 256}, "q"),
        ({"type": "t" * 65}, "type"),
        ({"type": "pay\nment"}, "type"),
        ({"status": ["failed"]}, "status"),
        ({"q": 5}, "q"),
    ],
)
def test_values_no_database_can_take_are_refused(args, param):
    with pytest.raises(FilterError) as error:
        parse_event_filter(args)
    assert error.value.param == param


def test_int_and_bool_parsing():
    assert parse_int("limit", None, default=50, minimum=1, maximum=500) == 50
    assert parse_int("limit", "9999", default=50, minimum=1, maximum=500) == 500
    for bad in ("0", "-1", "1.5", "abc", True, 2.0):
        with pytest.raises(FilterError, match="^limit: "):
            parse_int("limit", bad, default=50, minimum=1, maximum=500)
    assert parse_bool("force", "true") and parse_bool("force", True) and parse_bool("force", "1")
    assert not parse_bool("force", "no") and not parse_bool("force", None)
    with pytest.raises(FilterError, match="^force: must be true or false"):
        parse_bool("force", "maybe")


def test_payment_filter_parsing():
    assert parse_payment_filter({"status": "in_process"}).status == "in_process"
    with pytest.raises(FilterError, match="^status: "):
        parse_payment_filter({"status": "Approved!"})


# -- the query ------------------------------------------------------------------


def test_each_condition_selects_the_right_rows(app):
    alice = add_payment(111, payer_email="Alice.Smith@Example.com")
    bob = add_payment(222, payer_email="bob@example.org")
    failed_old = add_event(
        status=EventStatus.FAILED, received_at=NOW - timedelta(days=2), payment_id=alice.id
    )
    failed_new = add_event(status=EventStatus.FAILED, received_at=NOW, resource_id="555")
    success = add_event(status=EventStatus.SUCCESS, received_at=NOW, payment_id=bob.id)
    order = add_event(
        status=EventStatus.IGNORED,
        received_at=NOW - timedelta(hours=1),
        type="merchant_order",
        webhook_id="ipn:merchant_order:9",
    )

    def matching(**args):
        return ids(parse_event_filter(args, now=NOW))

    everything = sorted([failed_old.id, failed_new.id, success.id, order.id])
    assert matching() == everything
    assert matching(status="failed") == sorted([failed_old.id, failed_new.id])
    assert matching(status="failed,ignored") == sorted([failed_old.id, failed_new.id, order.id])
    assert matching(type="merchant_order") == [order.id]
    assert matching(since="1d") == sorted([failed_new.id, success.id, order.id])
    assert matching(until="2026-11-28") == [failed_old.id]  # the whole of the 28th
    assert matching(since="2026-11-29T11:00:00", until="2026-11-29T11:59:59") == [order.id]
    assert matching(q="555") == [failed_new.id]
    assert matching(q="ipn:merchant_order:9") == [order.id]
    assert matching(q="alice.smith") == [failed_old.id]  # part of the e-mail, any case
    assert matching(q="example.org") == [success.id]
    assert matching(q="%") == []  # a LIKE wildcard is searched for, not obeyed
    assert matching(q="_") == []
    assert matching(status="failed", q="example") == [failed_old.id]


def test_many_matching_e_mails_give_the_same_rows(app, monkeypatch):
    payments = [add_payment(300 + n, payer_email=f"team{n}@corp.example") for n in range(3)]
    events = [add_event(payment_id=payment.id) for payment in payments]
    add_event()  # no payment
    expected = sorted(event.id for event in events)
    assert ids(parse_event_filter({"q": "corp.example"})) == expected
    # More e-mails than fit in a literal list: the subquery form answers the same.
    monkeypatch.setattr(filters, "EMAIL_ID_LIST_CAP", 2)
    assert ids(parse_event_filter({"q": "corp.example"})) == expected


def test_restricted_to():
    assert parse_event_filter({}).restricted_to("failed").statuses == ("failed",)
    narrowed = parse_event_filter({"status": "failed,pending", "type": "payment"})
    assert narrowed.restricted_to("failed").statuses == ("failed",)
    assert narrowed.restricted_to("failed").args["type"] == "payment"
    assert parse_event_filter({"status": "success"}).restricted_to("failed") is None


def test_payment_filter_query(app):
    approved = add_payment(1, status="approved", external_reference="order-77")
    rejected = add_payment(2, status="rejected", payer_email="Someone@Mail.test")

    def matching(**args):
        return sorted(p.id for p in db.session.scalars(parse_payment_filter(args).query()))

    assert matching(status="rejected") == [rejected.id]
    assert matching(q="1") == [approved.id]
    assert matching(q="order-77") == [approved.id]
    assert matching(q="someone@mail") == [rejected.id]


# -- pagination ---------------------------------------------------------------


def test_cursor_round_trip_and_garbage():
    cursor = encode_cursor(NOW, 42)
    assert decode_cursor("after", cursor) == (NOW, 42)
    for bad in ("nope", "", "W10", encode_cursor(NOW, 1)[:-3] + "!!!", "x" * 500, 7):
        with pytest.raises(FilterError, match="^after: "):
            decode_cursor("after", bad)


def test_keyset_pages_walk_every_row_once_both_ways(app):
    # Ties on received_at: the id decides the order within them.
    events = [add_event(received_at=NOW - timedelta(minutes=n // 3)) for n in range(11)]
    newest_first = [e.id for e in sorted(events, key=lambda e: (e.received_at, e.id), reverse=True)]
    query = parse_event_filter({}).query()

    pages, cursor = [], None
    while True:
        page = keyset_page(query, WebhookEvent.received_at, WebhookEvent.id, limit=4, after=cursor)
        pages.append([e.id for e in page.items])
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == [newest_first[0:4], newest_first[4:8], newest_first[8:11]]
    assert page.prev_cursor is not None

    back = keyset_page(
        query, WebhookEvent.received_at, WebhookEvent.id, limit=4, before=page.prev_cursor
    )
    assert [e.id for e in back.items] == newest_first[4:8]
    first = keyset_page(
        query, WebhookEvent.received_at, WebhookEvent.id, limit=4, before=back.prev_cursor
    )
    assert [e.id for e in first.items] == newest_first[0:4]
    assert first.prev_cursor is None

    oldest_first = keyset_page(
        query, WebhookEvent.received_at, WebhookEvent.id, limit=5, descending=False
    )
    assert [e.id for e in oldest_first.items] == newest_first[::-1][:5]


def test_capped_count(app):
    for _ in range(5):
        add_event(status=EventStatus.FAILED)
    add_event(status=EventStatus.SUCCESS)
    failed = parse_event_filter({"status": "failed"}).query()
    assert capped_count(failed, 10) == (5, True)
    assert capped_count(failed, 5) == (5, True)
    assert capped_count(failed, 3) == (3, False)


@pytest.mark.parametrize("value", ["2h\n", "90m\n", "2026-11-29\n", "7d\r\n"])
def test_a_trailing_newline_is_not_a_time(value):
    # `$` matches before a final "\n": the patterns are used with fullmatch.
    with pytest.raises(FilterError, match="^since: "):
        parse_time("since", value, now=NOW)


@pytest.mark.parametrize("value", ["approved\nx", "approved\n\x00"])
def test_payment_status_must_be_a_status_name(value):
    with pytest.raises(FilterError) as error:
        filters.parse_payment_filter({"status": value})
    assert error.value.param == "status"
