"""Command line: `python -m webhooks_app.sandbox --host 127.0.0.1 --port 5001`."""

from __future__ import annotations

import argparse
import logging
import sys

from .app import create_sandbox_app
from .server import make_sandbox_server
from .state import SandboxState

logger = logging.getLogger("webhooks_app.sandbox")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m webhooks_app.sandbox",
        description="Imitation MercadoPago and GoHighLevel APIs with fault injection.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--access-token", help="accept only this MercadoPago bearer token")
    parser.add_argument("--ghl-token", help="accept only this GoHighLevel bearer token")
    parser.add_argument(
        "--rate-limit",
        metavar="N/SECONDS",
        help='GoHighLevel rate limit per location, e.g. "100/10" (default: off)',
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted."""
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    state = SandboxState(access_token=args.access_token, ghl_token=args.ghl_token)
    if args.rate_limit:
        requests, _, seconds = args.rate_limit.partition("/")
        state.set_rate_limit(int(requests), float(seconds or 10))
    # Keeps connections alive, like the real APIs (see server.py); each API call is
    # logged by the app itself (sandbox/gate.py).
    server = make_sandbox_server(create_sandbox_app(state), args.host, args.port)
    logger.info("sandbox listening on http://%s:%s", args.host, server.effective_port)
    try:
        server.run()  # returns on Ctrl-C, having stopped its threads
    finally:
        logger.info("sandbox stopping")
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
