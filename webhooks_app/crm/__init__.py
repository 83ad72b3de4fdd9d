"""The CRM seam: handlers sync payments through `current_crm()`, never a CRM's API directly.

GoHighLevel (`crm.gohighlevel`) is the only CRM today; a second one, or one per
account, is chosen here.
"""

from __future__ import annotations

from .base import CRM, SET_CONTACT, ContactChange, no_op
from .gohighlevel import GOHIGHLEVEL

__all__ = ["CRM", "SET_CONTACT", "ContactChange", "current_crm", "no_op"]


def current_crm() -> CRM:
    """The CRM of the current app."""
    return GOHIGHLEVEL
