"""WSGI entry point: `gunicorn wsgi:app`, and `flask --app wsgi …`."""

from webhooks_app import create_app

app = create_app()
