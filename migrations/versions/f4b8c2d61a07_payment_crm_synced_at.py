"""payments.crm_synced_at: the MercadoPago date_last_updated its CRM state was synced at

A late, older notification never moves a contact's tags or custom fields back: the
CRM sync of a payment is skipped, and its write refused, when its data is older than
the data last synced (crm.gohighlevel).

Revision ID: f4b8c2d61a07
Revises: f4b8d2c61a57
Create Date: 2026-12-04 22:15:00.000000

"""

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = "f4b8c2d61a07"
down_revision = "f4b8d2c61a57"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("crm_synced_at", sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_column("crm_synced_at")
