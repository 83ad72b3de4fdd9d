"""A long GoHighLevel outage under a stream of events, with real worker processes.

Without the circuit breaker every event would spend its whole retry budget against
the outage and be dead-lettered; with it they wait, uncounted, and all succeed.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from webhooks_app import breaker
from webhooks_app.models import AttemptOutcome, EventStatus
from webhooks_app.sandbox.outage import outages

from conftest import events, post_webhook
from processes import Processes, wait_until

pytestmark = pytest.mark.faults

EVENTS = 300
RETRY_DELAYS = (1, 2, 3)  # the whole retry budget: 6 s
OUTAGE = 20.0  # seconds: over three times the retry budget


@pytest.mark.timeout(150)
def test_a_long_gohighlevel_outage_opens_the_breaker_and_nothing_is_dead_lettered(
    app, client, sandbox, tmp_path
):
    """GoHighLevel answers 503 to every call for OUTAGE seconds while 300 events arrive.

    The issue's scenario is a 2-minute outage against the production retry policy
    (+1, +5, +15 min): what matters is that the outage outlasts the whole retry budget,
    so that without a breaker every event would be `failed`. Here retries come after
    1, 2 and 3 s (a 6 s budget) and the outage lasts 20 s, over three budgets; the breaker
    opens after 10 failures in a row, cools down 1 s doubling to 4 s (production: 30 s
    to 600 s), so probes still run several times during the outage.
    """
    service = Processes(
        tmp_path,
        sandbox.url,
        TEST_RETRY_DELAYS=",".join(map(str, RETRY_DELAYS)),
        RECONCILE_INTERVAL="0.5",
        RECONCILE_GRACE="1",
        LEASE_SECONDS="8",
        TEST_HTTP_TIMEOUT="6",
        GHL_MAX_WAIT="2",
        BREAKER_THRESHOLD="10",
        BREAKER_WINDOW="60",
        BREAKER_COOLDOWN="1",
        BREAKER_MAX_COOLDOWN="4",
    )
    try:
        service.start_worker()
        service.start_worker("worker-2")
        service.start_scheduler()
        outages(sandbox.state).start("gohighlevel", OUTAGE, 503)
        began = time.monotonic()
        for _ in range(EVENTS):  # a stream: about 20 a second during the outage
            answer = post_webhook(client, sandbox.state.add_payment()["id"])
            assert answer.status_code == 200
            time.sleep(0.02)
        wait_until(lambda: all(e.status in EventStatus.FINAL for e in events()), 100, interval=0.5)
        assert time.monotonic() - began > OUTAGE  # nothing could succeed before it ended
    finally:
        service.stop_all()
        outages(sandbox.state).start("gohighlevel", 0)

    stored = events()
    assert len(stored) == EVENTS
    assert Counter(e.status for e in stored) == {EventStatus.SUCCESS: EVENTS}
    budget = 1 + len(RETRY_DELAYS)
    for event in stored:
        outcomes = [a.outcome for a in event.attempt_log]
        assert len(outcomes) == event.attempts <= budget  # a held attempt leaves no row
        assert outcomes[-1] == AttemptOutcome.SUCCESS
    state = breaker.states_for_display()["gohighlevel"]
    assert (state["state"], state["openings"], state["closings"]) == ("closed", 1, 1)
    spent = Counter(e.attempts for e in stored)
    print(f"attempts per event: {dict(sorted(spent.items()))}")
