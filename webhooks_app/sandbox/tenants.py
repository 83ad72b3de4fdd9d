"""Many tenants in one sandbox, as the real APIs serve many: MercadoPago sellers (one access
token each) and GoHighLevel sub-accounts (one location token each).

- MercadoPago: a resource created for a registered token (`owner=`) belongs to that seller.
  Read with another registered token, it is answered as MercadoPago answers for a payment
  that is not yours: the same 404 as for an id that does not exist (the API never tells a
  seller that another seller's payment exists; mercadopago/sdk-php#174 and
  mercadopago/sdk-nodejs#131: a payment read with another application's credentials is
  "Payment not found"). `/v1/payments/search` lists only what the caller may read.
- GoHighLevel: a location token works in its own location only. Upserting with another
  `locationId`, or touching another location's contact, is refused with
  403 `{"statusCode": 403, "message": "The token does not have access to this location."}`
  (the answer quoted in GoHighLevel/highlevel-api-docs#213).

Backward compatible: with no token registered, any bearer token works (or the one the
sandbox was started with) and everything is visible; a resource created without an owner
is visible to every token.

A mixin of `SandboxState`: it owns the lock, and `reset()` calls `_reset_tenants()`.
"""

from __future__ import annotations

import threading
from typing import Any

# The kinds of MercadoPago resources that have an owner.
PAYMENT = "payment"
MERCHANT_ORDER = "merchant_order"
CHARGEBACK = "chargeback"
PREAPPROVAL = "preapproval"
AUTHORIZED_PAYMENT = "authorized_payment"
CLAIM = "claim"
KINDS = (PAYMENT, MERCHANT_ORDER, CHARGEBACK, PREAPPROVAL, AUTHORIZED_PAYMENT, CLAIM)

# GoHighLevel's answer to a location token used on another location (see the docstring).
WRONG_LOCATION = "The token does not have access to this location."


class Tenants:
    """Registered MercadoPago and GoHighLevel tokens, and who owns which resource."""

    _lock: threading.RLock
    # Set when the sandbox is started with one token (`--access-token`, `--ghl-token`).
    access_token: str | None
    ghl_token: str | None

    def _reset_tenants(self) -> None:
        self._mp_tokens: set[str] = set()
        self._ghl_locations: dict[str, str] = {}  # location token -> its location id
        self._owners: dict[tuple[str, str], str] = {}  # (kind, id) -> owner's access token

    # -- registration --------------------------------------------------------------

    def register_mp_token(self, token: str) -> None:
        """Accept `token` as one seller's MercadoPago access token."""
        if not isinstance(token, str) or not token.strip():
            raise ValueError("a MercadoPago access token is a non-empty string")
        with self._lock:
            self._mp_tokens.add(token.strip())

    def register_ghl_token(self, token: str, location_id: str) -> None:
        """Accept `token` as the GoHighLevel token of the sub-account `location_id`."""
        if not isinstance(token, str) or not token.strip():
            raise ValueError("a GoHighLevel token is a non-empty string")
        if not isinstance(location_id, str) or not location_id.strip():
            raise ValueError("a GoHighLevel location id is a non-empty string")
        with self._lock:
            self._ghl_locations[token.strip()] = location_id.strip()

    def tenants(self) -> dict[str, Any]:
        """The registered tokens, for the control API (a sandbox's tokens are no secrets)."""
        with self._lock:
            return {
                "mercadopago": sorted(self._mp_tokens),
                "gohighlevel": dict(sorted(self._ghl_locations.items())),
            }

    # -- MercadoPago ---------------------------------------------------------------

    def mp_token_accepted(self, token: str) -> bool:
        """Whether MercadoPago would accept this (non-empty) bearer token."""
        with self._lock:
            if not self._mp_tokens and not self.access_token:
                return True
            return token == self.access_token or token in self._mp_tokens

    def _own(self, kind: str, resource_id: Any, owner: str | None) -> None:
        """Record `owner` as the seller of a resource (None: leave it as it is)."""
        if owner is None:
            return
        if kind not in KINDS:
            raise ValueError(f"unknown resource kind {kind!r}")
        with self._lock:
            if owner not in self._mp_tokens:
                # A typo would make a resource nobody can read: say so at once.
                raise ValueError("owner must be a registered MercadoPago access token")
            self._owners[(kind, str(resource_id))] = owner

    def owner_of(self, kind: str, resource_id: Any) -> str | None:
        """The access token that owns the resource, or None (visible to all)."""
        with self._lock:
            return self._owners.get((kind, str(resource_id)))

    def readable(self, kind: str, resource_id: Any, token: str) -> bool:
        """Whether `token` may read the resource: it has no owner, or `token` owns it."""
        owner = self.owner_of(kind, resource_id)
        return owner is None or owner == token

    # -- GoHighLevel ---------------------------------------------------------------

    def ghl_token_accepted(self, token: str) -> bool:
        """Whether GoHighLevel would accept this (non-empty) bearer token."""
        with self._lock:
            if not self._ghl_locations and not self.ghl_token:
                return True
            return token == self.ghl_token or token in self._ghl_locations

    def ghl_location_allowed(self, token: str, location_id: Any) -> bool:
        """Whether `token` may act in `location_id`: a registered location token only in its
        own location; any other accepted token (an agency-like one) anywhere."""
        with self._lock:
            own = self._ghl_locations.get(token)
        return own is None or own == location_id
