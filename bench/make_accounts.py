"""Create benchmark accounts through the service's own Account model (secrets encrypted
with ACCOUNT_SECRET_KEYS, as `secret_box` does for any account); print them as JSON.

    DATABASE_URL=… ACCOUNT_SECRET_KEYS=… python bench/make_accounts.py SLUG [SLUG …]

Run by common.create_accounts in the environment of the processes under test (same
database, same key), so that the web server and the workers read what is written here.
Each account gets its own webhook secret, MercadoPago token, GoHighLevel token and
location (`loc-<slug>`: its own bucket of the sandbox's per-location rate limit).
"""

from __future__ import annotations

import json
import secrets
import sys

from webhooks_app import create_app
from webhooks_app.accounts import Account
from webhooks_app.extensions import db


def main(slugs: list[str]) -> None:
    app = create_app()
    made = []
    with app.app_context():
        for slug in slugs:
            secret = f"whsec-{slug}-{secrets.token_hex(8)}"
            account = Account(slug=slug, name=f"bench {slug}", ghl_location_id=f"loc-{slug}")
            account.set_secret("mp_webhook_secret", secret)
            account.set_secret("mp_access_token", f"APP_USR-{slug}-{secrets.token_hex(6)}")
            account.set_secret("ghl_api_token", f"pit-{slug}-{secrets.token_hex(6)}")
            db.session.add(account)
            made.append((account, secret))
        db.session.commit()
        print(
            json.dumps(
                [
                    {"id": a.id, "slug": a.slug, "secret": s, "location": a.ghl_location_id}
                    for a, s in made
                ]
            )
        )
        db.session.remove()


if __name__ == "__main__":
    main(sys.argv[1:])
