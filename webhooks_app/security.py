"""Browser-facing hardening: proxy headers, security headers, a CSP nonce.

Every response gets `X-Content-Type-Options: nosniff`, a Content-Security-Policy
that forbids framing (clickjacking the retry and requeue buttons), and, when it
was served over HTTPS, `Strict-Transport-Security`. `request.is_secure` is only
right behind Heroku's router if ProxyFix trusts its `X-Forwarded-Proto`, hence
PROXY_FIX_HOPS (1 in production, 0 elsewhere: a client's own X-Forwarded-* is
never believed where no proxy rewrites it).
"""

from __future__ import annotations

import secrets

from flask import Flask, Response, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

# Two years, the value hstspreload.org asks for; no includeSubDomains: other hosts
# of the operator's domain are not ours to decide for.
HSTS_VALUE = "max-age=63072000"

# The admin: its own CSS and JS files only, nothing inline, SVG charts drawn inline
# (markup, not script), forms posting to itself.
ADMIN_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# rq-dashboard 0.9.0 cannot run under the admin's policy, for three reasons found by
# loading every /rq page in Chromium (tests/test_browser_csp.py):
#  - one inline <script> per page, rendered with per-page values (url prefix, poll
#    interval, job id), so no fixed hash fits: templates/rq_dashboard/base.html (a copy
#    of its base.html) gives it this response's nonce instead of 'unsafe-inline', which
#    keeps event-handler attributes injected through its unescaped fields inert;
#  - underscore's _.template compiles its <script type="text/template"> blocks with
#    `new Function`: 'unsafe-eval' (it only ever compiles those server-rendered blocks);
#  - style="" attributes in its templates (float: right, display: none): allowed in
#    attributes only (style-src-attr); <style> elements stay refused. CSS cannot run
#    script, so this opens nothing an attacker can use.
RQ_CSP = (
    "default-src 'none'; script-src 'self' 'nonce-{nonce}' 'unsafe-eval'; "
    "style-src 'self'; style-src-attr 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# JSON, metrics, health, static files: nothing to run, nothing to frame.
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'"
HTML_BLUEPRINTS = {"admin": ADMIN_CSP, "rq_dashboard": RQ_CSP}


def init_app(app: Flask) -> None:
    """Trust PROXY_FIX_HOPS proxies' X-Forwarded-For/Proto/Port; add the headers."""
    hops = app.config["PROXY_FIX_HOPS"]
    if hops:
        # Not X-Forwarded-Host: Heroku's router keeps Host as the client sent it and
        # passes an X-Forwarded-Host through untouched, so a client could forge it
        # (and with it url_for's host and the same-origin checks).
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_port=hops, x_host=0, x_prefix=0
        )
    app.after_request(_security_headers)
    app.context_processor(lambda: {"csp_nonce": csp_nonce})


def csp_nonce() -> str:
    """This response's nonce for inline scripts (one per request)."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return g.csp_nonce


def _security_headers(response: Response) -> Response:
    headers = response.headers
    policy = HTML_BLUEPRINTS.get(request.blueprint or "", DEFAULT_CSP)
    headers.setdefault("Content-Security-Policy", policy.format(nonce=csp_nonce()))
    headers.setdefault("X-Frame-Options", "DENY")  # for browsers without frame-ancestors
    headers.setdefault("X-Content-Type-Options", "nosniff")
    if request.blueprint in HTML_BLUEPRINTS:
        headers.setdefault("Cache-Control", "no-store")
        headers.setdefault("Referrer-Policy", "same-origin")
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", HSTS_VALUE)
    return response
