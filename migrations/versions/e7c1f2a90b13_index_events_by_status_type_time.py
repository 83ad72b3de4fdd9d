"""index events by status, type and time: the filtered listing's capped count

`GET /api/webhook-events?status=failed&type=payment` counts up to COUNT_CAP
matching rows; with only (status, received_at) that count reads every matching
row to check its type (15 ms at 10^6 events, bench/history.py). With this index
the count and the page are index-only range scans.

Revision ID: e7c1f2a90b13
Revises: d3a468b82244
Create Date: 2026-11-29 04:50:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'e7c1f2a90b13'
down_revision = 'd3a468b82244'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.create_index(
            'ix_webhook_events_status_type_received_at',
            ['status', 'type', 'received_at'],
            unique=False,
        )


def downgrade():
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_events_status_type_received_at')
