"""GoHighLevel contacts in the sandbox's state: upsert (matched per location by e-mail, else
phone), lookups and tags; the records themselves are built by `contacts`.

A mixin: `SandboxState` owns the lock, the clock and the containers (`reset`), this works
on them.
"""

from __future__ import annotations

import copy
import random
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from . import contacts as ghl_contacts


class ContactBook:
    """GoHighLevel's contacts, indexed by (location, e-mail or phone)."""

    # Set up by SandboxState.__init__ and reset().
    _lock: threading.RLock
    _ids: random.Random
    _contacts: dict[str, dict[str, Any]]
    _contact_index: dict[tuple[str, str, str], str]

    _tick: Callable[[], datetime]  # now, strictly after the previous change

    def upsert_contact(self, body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create or update the contact matched by e-mail, else phone; return (contact, is_new).

        GHL matches by the location's "Allow Duplicate Contact" order; the sandbox
        uses e-mail first, then phone.
        The body must already be valid (see `contacts.upsert_errors`).
        """
        with self._lock:
            now = ghl_contacts.format_ghl_time(self._tick())
            location = body["locationId"]
            keys = ghl_contacts.match_keys(body)
            contact_id = next(
                (
                    self._contact_index[(location, *key)]
                    for key in keys
                    if (location, *key) in self._contact_index
                ),
                None,
            )
            if contact_id is None:
                contact_id = ghl_contacts.new_contact_id(self._ids)
                contact = ghl_contacts.new_contact(contact_id, body, now)
                self._contacts[contact_id] = contact
                is_new = True
            else:
                contact = ghl_contacts.apply_upsert(self._contacts[contact_id], body, now)
                is_new = False
            for key in ghl_contacts.match_keys(contact):
                self._contact_index.setdefault((location, *key), contact_id)
            return copy.deepcopy(contact), is_new

    def get_contact(self, contact_id: str) -> dict[str, Any] | None:
        """A copy of the contact, or None."""
        with self._lock:
            contact = self._contacts.get(contact_id)
            return copy.deepcopy(contact) if contact is not None else None

    def find_contact(self, email: str, location_id: str | None = None) -> dict[str, Any] | None:
        """A copy of the contact with this e-mail (in `location_id`, if given), or None."""
        email = email.strip().lower()
        with self._lock:
            for contact in self._contacts.values():
                if contact.get("emailLowerCase") == email and location_id in (
                    None,
                    contact["locationId"],
                ):
                    return copy.deepcopy(contact)
            return None

    def contacts(self) -> list[dict[str, Any]]:
        """Copies of every contact, oldest first."""
        with self._lock:
            return copy.deepcopy(list(self._contacts.values()))

    def change_tags(self, contact_id: str, tags: list[str], *, add: bool) -> list[str] | None:
        """Add or remove normalised tags; return the contact's tags, or None if unknown."""
        with self._lock:
            contact = self._contacts.get(contact_id)
            if contact is None:
                return None
            if add:
                result = ghl_contacts.add_tags(contact, tags)
            else:
                result = ghl_contacts.remove_tags(contact, tags)
            contact["dateUpdated"] = ghl_contacts.format_ghl_time(self._tick())
            return result

    @staticmethod
    def new_trace_id() -> str:
        """A trace id like the ones GoHighLevel returns."""
        return str(uuid.uuid4())
