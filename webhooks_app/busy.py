"""`ResourceBusy`: an attempt needs a lock that another worker holds right now.

Raised from inside a handler (after the claim), e.g. by the CRM when another worker
is syncing the same contact. Nothing is wrong with the event: the attempt is recorded
(outcome `busy`) and the event is tried again shortly, without spending its retry
budget, so that a burst of one customer's payments never dead-letters any of them.
"""

from __future__ import annotations


class ResourceBusy(Exception):
    """Another worker holds a lock this attempt needs; try again in `retry_after` seconds."""

    retryable = True
    retry_after = 2.0
