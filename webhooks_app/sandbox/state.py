"""The sandbox's in-memory state: the resources of both APIs (payments, orders, chargebacks,
subscriptions and their charges, claims); GoHighLevel's contacts from
`contact_book.ContactBook`, faults and the call log from `injection.FaultInjection`, the
tenants (registered tokens, who owns which resource) from `tenants.Tenants`.

One re-entrant lock guards everything, because the server answers each request
in its own thread and tests change the state from yet another thread. Nothing
sleeps while holding the lock: `admit` only decides how long a call must wait.
"""

from __future__ import annotations

import copy
import logging
import random
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from . import authorized_payments as mp_charges
from . import claims as mp_claims
from . import orders as mp_orders
from . import payments as mp_payments
from . import preapprovals as mp_preapprovals
from .contact_book import ContactBook
from .faults import (
    GHL_BURST_SECONDS,
    GOHIGHLEVEL,
    MERCADOPAGO,
    Fault,
    Latency,
    RandomFailures,
    RateLimiter,
    RealClock,
)
from .injection import FaultInjection
from .tenants import (
    AUTHORIZED_PAYMENT,
    CHARGEBACK,
    CLAIM,
    MERCHANT_ORDER,
    PAYMENT,
    PREAPPROVAL,
    Tenants,
)

logger = logging.getLogger(__name__)


# What the headers report when no rate limit is set: far more than the sandbox can serve.
UNLIMITED_REQUESTS = 1_000_000
UNLIMITED_DAILY = 1_000_000_000


def _first_payment_id() -> int:
    """Start ids from the clock so a restarted sandbox does not reuse a dev database's ids."""
    return 10_000_000_000 + int(RealClock.time() * 1000) % 10_000_000_000


def _numeric_id(raw: Any, what: str) -> int | None:
    """An id given to a control call, as MercadoPago's numeric ids; None when absent."""
    if raw is None:
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{what} id must be numeric, got {raw!r}") from None


class SandboxState(FaultInjection, ContactBook, Tenants):
    """Everything the sandbox remembers, safe to use from any thread.

    `access_token` / `ghl_token`: when set, the MercadoPago / GoHighLevel routes accept that
    bearer token (and the registered ones, see tenants.py); with neither, any non-empty one.
    Every `add_*` takes `owner=<registered access token>`: the seller the resource belongs to
    (one made from another, e.g. a chargeback's new payment, gets the same owner).
    """

    def __init__(self, access_token: str | None = None, ghl_token: str | None = None) -> None:
        self.access_token = access_token
        self.ghl_token = ghl_token
        self._lock = threading.RLock()
        self._next_payment_id = _first_payment_id()
        # Other id ranges than payments', so that a fault keyed by id hits one resource.
        self._next_order_id = self._next_payment_id + 20_000_000_000
        self._next_chargeback_id = self._next_payment_id + 40_000_000_000
        self._next_charge_id = self._next_payment_id + 60_000_000_000
        self._ids = random.Random()
        self._last_tick: datetime | None = None
        self.reset()

    # -- lifecycle -----------------------------------------------------------------

    def reset(self) -> None:
        """Forget payments, contacts, faults, limits, latency, calls and registered tenants
        (the tokens the sandbox was started with stay)."""
        with self._lock:
            self._reset_tenants()
            self._payments: dict[int, dict[str, Any]] = {}
            self._merchant_orders: dict[int, dict[str, Any]] = {}
            self._chargebacks: dict[str, dict[str, Any]] = {}
            self._preapprovals: dict[str, dict[str, Any]] = {}
            self._authorized_payments: dict[int, dict[str, Any]] = {}
            self._claims: dict[str, dict[str, Any]] = {}
            self._contacts: dict[str, dict[str, Any]] = {}
            # (locationId, "email" or "phone", value) -> contact id
            self._contact_index: dict[tuple[str, str, str], str] = {}
            self._faults: dict[tuple[str, str], Fault] = {}
            self._random: dict[str, RandomFailures] = {}
            self._latency: dict[str, Latency] = {}
            self._rate_limiter: RateLimiter | None = None
            # Counts calls when no limit is set, so that every answer still carries
            # GHL's rate-limit headers (an app whose limits were raised, never refused).
            self._call_counter = RateLimiter(
                UNLIMITED_REQUESTS, GHL_BURST_SECONDS, UNLIMITED_DAILY, enforce=False
            )
            self._calls: list[dict[str, Any]] = []
        logger.info("sandbox state reset")

    def _tick(self) -> datetime:
        """Now, to the millisecond, strictly after the previous tick.

        Callers page through payments by `date_last_updated`; two changes in the
        same millisecond would make such a cursor skip or repeat one.
        """
        now = datetime.now(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        if self._last_tick is not None and now <= self._last_tick:
            now = self._last_tick + timedelta(milliseconds=1)
        self._last_tick = now
        return now

    # -- MercadoPago payments ------------------------------------------------------

    def add_payment(self, **fields: Any) -> dict[str, Any]:
        """Create a payment, or update it when `id` exists; return a copy of it."""
        owner = fields.pop("owner", None)
        with self._lock:
            now = mp_payments.format_mp_time(self._tick())
            raw_id = fields.get("id")
            if raw_id is None:
                payment_id = self._next_payment_id
            else:
                try:
                    payment_id = int(raw_id)
                except (TypeError, ValueError):
                    raise ValueError(f"payment id must be numeric, got {raw_id!r}") from None
            self._own(PAYMENT, payment_id, owner)
            self._next_payment_id = max(self._next_payment_id, payment_id + 1)
            existing = self._payments.get(payment_id)
            if existing is None:
                payment = mp_payments.new_payment(payment_id, now, fields)
                self._payments[payment_id] = payment
                logger.info("payment %s created (%s)", payment_id, payment["status"])
            else:
                payment = mp_payments.update_payment(existing, fields, now)
                logger.info("payment %s updated (%s)", payment_id, payment["status"])
            return copy.deepcopy(payment)

    def get_payment(self, payment_id: int | str) -> dict[str, Any] | None:
        """A copy of the payment, or None."""
        try:
            key = int(payment_id)
        except (TypeError, ValueError):
            return None
        with self._lock:
            payment = self._payments.get(key)
            return copy.deepcopy(payment) if payment is not None else None

    def payments(self) -> list[dict[str, Any]]:
        """Copies of every payment, oldest first."""
        with self._lock:
            return copy.deepcopy(list(self._payments.values()))

    def search_payments(self, args: Mapping[str, str], token: str | None = None) -> dict[str, Any]:
        """Answer a `/v1/payments/search` query (only the payments `token` may read, if given);
        raise ValueError for bad parameters."""
        with self._lock:
            mine = [p for p in self._payments.values() if self.readable(PAYMENT, p["id"], token)]
            result = mp_payments.search_payments(
                self._payments.values() if token is None else mine, args, datetime.now(UTC)
            )
            return copy.deepcopy(result)

    # -- MercadoPago merchant orders and chargebacks -------------------------------

    def add_merchant_order(self, **fields: Any) -> dict[str, Any]:
        """Create (or replace) a merchant order listing the payments `payment_ids` (one new
        approved payment if none are given); return a copy of it."""
        owner = fields.pop("owner", None)
        with self._lock:
            now = mp_payments.format_mp_time(self._tick())
            payment_ids = fields.get("payment_ids")
            if payment_ids is None:
                payments = [self.add_payment(owner=owner)]
            else:
                payments = []
                for payment_id in payment_ids:
                    payment = self.get_payment(payment_id)
                    if payment is None:
                        raise ValueError(f"payment {payment_id!r} does not exist")
                    payments.append(payment)
            order_id = int(fields["id"]) if fields.get("id") is not None else self._next_order_id
            self._next_order_id = max(self._next_order_id, order_id + 1)
            self._own(MERCHANT_ORDER, order_id, owner or self.owner_of(PAYMENT, payments[0]["id"]))
            order = mp_orders.new_merchant_order(order_id, now, payments, fields)
            self._merchant_orders[order_id] = order
            logger.info("merchant order %s stored (%d payments)", order_id, len(payments))
            return copy.deepcopy(order)

    def get_merchant_order(self, order_id: int | str) -> dict[str, Any] | None:
        """A copy of the merchant order, or None."""
        try:
            key = int(order_id)
        except (TypeError, ValueError):
            return None
        with self._lock:
            order = self._merchant_orders.get(key)
            return copy.deepcopy(order) if order is not None else None

    def add_chargeback(self, **fields: Any) -> dict[str, Any]:
        """Create or update a chargeback against `payment_id` (a new approved payment if
        none is given); return a copy of it."""
        owner = fields.pop("owner", None)
        with self._lock:
            now = self._tick()
            chargeback_id = str(fields.get("id") or self._next_chargeback_id)
            if chargeback_id.isdigit():
                self._next_chargeback_id = max(self._next_chargeback_id, int(chargeback_id) + 1)
            existing = self._chargebacks.get(chargeback_id)
            if existing is not None:
                self._own(CHARGEBACK, chargeback_id, owner)
                existing.update({k: v for k, v in fields.items() if k not in ("id", "payment_id")})
                existing["date_last_updated"] = mp_payments.format_mp_time(now)
                return copy.deepcopy(existing)
            payment_id = fields.get("payment_id")
            payment = (
                self.add_payment(owner=owner)
                if payment_id is None
                else self.get_payment(payment_id)
            )
            if payment is None:
                raise ValueError(f"payment {payment_id!r} does not exist")
            self._own(CHARGEBACK, chargeback_id, owner or self.owner_of(PAYMENT, payment["id"]))
            chargeback = mp_orders.new_chargeback(chargeback_id, now, payment, fields)
            self._chargebacks[chargeback_id] = chargeback
            logger.info("chargeback %s created on payment %s", chargeback_id, payment["id"])
            return copy.deepcopy(chargeback)

    def get_chargeback(self, chargeback_id: str) -> dict[str, Any] | None:
        """A copy of the chargeback, or None."""
        with self._lock:
            chargeback = self._chargebacks.get(str(chargeback_id))
            return copy.deepcopy(chargeback) if chargeback is not None else None

    # -- MercadoPago subscriptions (preapprovals) -----------------------------------

    def add_preapproval(self, **fields: Any) -> dict[str, Any]:
        """Create a subscription, or update it when `id` exists; return a copy of it."""
        owner = fields.pop("owner", None)
        with self._lock:
            now = mp_payments.format_mp_time(self._tick())
            preapproval_id = str(fields.get("id") or mp_preapprovals.new_preapproval_id())
            self._own(PREAPPROVAL, preapproval_id, owner)
            existing = self._preapprovals.get(preapproval_id)
            if existing is None:
                preapproval = mp_preapprovals.new_preapproval(preapproval_id, now, fields)
                self._preapprovals[preapproval_id] = preapproval
            else:
                preapproval = mp_preapprovals.update_preapproval(existing, fields, now)
            logger.info("preapproval %s: %s", preapproval_id, preapproval["status"])
            return copy.deepcopy(preapproval)

    def get_preapproval(self, preapproval_id: str) -> dict[str, Any] | None:
        """A copy of the subscription, or None."""
        with self._lock:
            preapproval = self._preapprovals.get(str(preapproval_id))
            return copy.deepcopy(preapproval) if preapproval is not None else None

    def add_authorized_payment(self, **fields: Any) -> dict[str, Any]:
        """Create a charge of the subscription `preapproval_id`, or update it when `id` exists;
        return a copy. Its payment (in `payment_status`, default approved) is `payment_id`'s,
        else a new one of the subscriber for the subscription's amount; a `scheduled` charge
        has none yet. An update moves the charge's payment to `payment_status` too."""
        owner = fields.pop("owner", None)
        with self._lock:
            charge_id = _numeric_id(fields.get("id"), "authorized payment")
            existing = self._authorized_payments.get(charge_id) if charge_id else None
            preapproval_id = (existing or fields).get("preapproval_id")
            preapproval = self._preapprovals.get(str(preapproval_id))
            if preapproval is None:
                raise ValueError(f"preapproval {preapproval_id!r} does not exist")
            owner = owner or self.owner_of(PREAPPROVAL, preapproval["id"])
            payment = self._charge_payment(preapproval, fields, existing, owner)
            now = mp_payments.format_mp_time(self._tick())
            if existing is not None:
                return copy.deepcopy(
                    mp_charges.update_authorized_payment(existing, payment, fields, now)
                )
            charge_id = charge_id or self._next_charge_id
            self._next_charge_id = max(self._next_charge_id, charge_id + 1)
            self._own(AUTHORIZED_PAYMENT, charge_id, owner)
            charge = mp_charges.new_authorized_payment(charge_id, now, preapproval, payment, fields)
            self._authorized_payments[charge_id] = charge
            logger.info("authorized payment %s of preapproval %s", charge_id, preapproval_id)
            return copy.deepcopy(charge)

    def _charge_payment(
        self,
        preapproval: dict[str, Any],
        fields: Mapping[str, Any],
        charge: dict | None,
        owner: str | None,
    ) -> dict[str, Any] | None:
        """The payment a charge made, created or moved to `payment_status` as asked."""
        status = fields.get("payment_status")
        payment_id = fields.get("payment_id") or ((charge or {}).get("payment") or {}).get("id")
        if payment_id is not None:
            payment = self.get_payment(payment_id)
            if payment is None:
                raise ValueError(f"payment {payment_id!r} does not exist")
            return self.add_payment(id=payment_id, status=status) if status else payment
        if charge is not None or fields.get("status") == "scheduled":
            return None  # an update without a payment, or a charge not attempted yet
        recurring = preapproval.get("auto_recurring") or {}
        return self.add_payment(
            owner=owner,
            status=status or "approved",
            transaction_amount=recurring.get("transaction_amount", 100.0),
            currency_id=recurring.get("currency_id", "BRL"),
            payer={"email": preapproval.get("payer_email")},
            description=preapproval.get("reason"),
        )

    def get_authorized_payment(self, charge_id: str) -> dict[str, Any] | None:
        """A copy of the charge, or None."""
        try:
            key = int(charge_id)
        except (TypeError, ValueError):
            return None
        with self._lock:
            charge = self._authorized_payments.get(key)
            return copy.deepcopy(charge) if charge is not None else None

    # -- MercadoPago claims --------------------------------------------------------

    def add_claim(self, **fields: Any) -> dict[str, Any]:
        """Create a claim on a payment (`resource_id`), or update it when `id` exists."""
        owner = fields.pop("owner", None)
        with self._lock:
            now = mp_payments.format_mp_time(self._tick())
            claim_id = str(fields.get("id") or self._ids.randrange(5_000_000_000, 5_999_999_999))
            claim = self._claims.get(claim_id)
            if claim is None:
                claim = mp_claims.new_claim(int(claim_id), now, fields)
                self._claims[claim_id] = claim
            else:
                claim.update({k: v for k, v in fields.items() if k != "id"}, last_updated=now)
            self._own(CLAIM, claim_id, owner or self.owner_of(PAYMENT, claim["resource_id"]))
            return copy.deepcopy(claim)

    def get_claim(self, claim_id: str) -> dict[str, Any] | None:
        """A copy of the claim, or None."""
        with self._lock:
            claim = self._claims.get(str(claim_id))
            return copy.deepcopy(claim) if claim is not None else None


__all__ = ["GOHIGHLEVEL", "MERCADOPAGO", "SandboxState"]
