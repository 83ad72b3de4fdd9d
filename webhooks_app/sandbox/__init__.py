"""A local imitation of the MercadoPago and GoHighLevel APIs, with fault injection.

- `create_sandbox_app(state)`: the Flask app (API routes + /_sandbox control routes).
- `SandboxState`: the in-memory, thread-safe state, scriptable from Python.
- `SandboxServer`: runs the app on a free loopback port in a thread, for tests.
"""

from .app import create_sandbox_app
from .faults import GOHIGHLEVEL, MERCADOPAGO
from .server import SandboxServer
from .state import SandboxState

__all__ = [
    "GOHIGHLEVEL",
    "MERCADOPAGO",
    "SandboxServer",
    "SandboxState",
    "create_sandbox_app",
]
