"""The ingestion ceiling: a bare Flask endpoint that parses the JSON and answers 200.

`gunicorn bare_app:app` (with bench/ on PYTHONPATH), same settings as the Procfile.
It answers on the same paths as the service (also an account's, `/webhooks/mp/<slug>`)
so the same requests hit both.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/webhooks/mp")
@app.post("/webhooks/mp/<slug>")
def receive(slug: str | None = None):
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        return jsonify({"error": "the JSON body must be an object"}), 400
    return jsonify({"status": "accepted"}), 200


@app.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})
