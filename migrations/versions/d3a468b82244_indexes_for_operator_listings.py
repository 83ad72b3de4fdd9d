"""indexes for the operator listings: events by status and time, payments by update time

The admin and the API list events filtered by status in received-time order
(keyset pages), and the stats find the oldest pending event and the recent
successes; payments are listed most recently updated first.

Revision ID: d3a468b82244
Revises: ba9cacd6ca7d
Create Date: 2026-11-29 04:00:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'd3a468b82244'
down_revision = 'ba9cacd6ca7d'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_events_status_received_at', ['status', 'received_at'], unique=False)

    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.create_index('ix_payments_updated_at', ['updated_at'], unique=False)


def downgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index('ix_payments_updated_at')

    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_events_status_received_at')
