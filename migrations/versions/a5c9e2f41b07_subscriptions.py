"""subscriptions (topic subscription_preapproval) and mp_alerts (fraud alerts, claims)

Revision ID: a5c9e2f41b07
Revises: f4b2c9d1e8a7
Create Date: 2026-12-04 22:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'a5c9e2f41b07'
down_revision = 'f4b2c9d1e8a7'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    op.create_table(
        'subscriptions',
        sa.Column('id', BigId, primary_key=True),
        sa.Column('mp_preapproval_id', sa.String(length=64), nullable=False),
        sa.Column('status', sa.String(length=32), nullable=True),
        sa.Column('payer_email', sa.String(length=320), nullable=True),
        sa.Column('preapproval_plan_id', sa.String(length=64), nullable=True),
        sa.Column('reason', sa.String(length=255), nullable=True),
        sa.Column('external_reference', sa.String(length=255), nullable=True),
        sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column('currency', sa.String(length=8), nullable=True),
        sa.Column('frequency', sa.Integer(), nullable=True),
        sa.Column('frequency_type', sa.String(length=16), nullable=True),
        sa.Column('next_payment_date', sa.DateTime(), nullable=True),
        sa.Column('mp_last_modified', sa.DateTime(), nullable=True),
        sa.Column('raw', sa.JSON(), nullable=True),
        sa.Column('ghl_contact_id', sa.String(length=64), nullable=True),
        sa.Column('tags_applied', sa.JSON(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.UniqueConstraint('mp_preapproval_id', name='uq_subscriptions_mp_preapproval_id'),
    )
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.create_index('ix_subscriptions_payer_email', ['payer_email'], unique=False)
        batch_op.create_index('ix_subscriptions_updated_at', ['updated_at'], unique=False)
    op.create_table(
        'mp_alerts',
        sa.Column('id', BigId, primary_key=True),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('mp_resource_id', sa.String(length=64), nullable=False),
        sa.Column('mp_payment_id', sa.String(length=64), nullable=True),
        sa.Column('status', sa.String(length=32), nullable=True),
        sa.Column('detail', sa.String(length=255), nullable=True),
        sa.Column('payer_email', sa.String(length=320), nullable=True),
        sa.Column('raw', sa.JSON(), nullable=True),
        sa.Column('ghl_contact_id', sa.String(length=64), nullable=True),
        sa.Column('alerted_at', sa.DateTime(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.UniqueConstraint('kind', 'mp_resource_id', name='uq_mp_alerts_kind_resource'),
    )


def downgrade():
    op.drop_table('mp_alerts')
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_index('ix_subscriptions_updated_at')
        batch_op.drop_index('ix_subscriptions_payer_email')
    op.drop_table('subscriptions')
