"""authorized_payments (topic subscription_authorized_payment): a subscription's charges

One row per MercadoPago authorized payment (`GET /authorized_payments/{id}`), linked to
its subscription (nullable: the charge can be notified before the subscription is
stored) and, by MercadoPago id, to the payment it made.

Revision ID: c7d2e5a8b104
Revises: a5c9e2f41b07
Create Date: 2026-12-05 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'c7d2e5a8b104'
down_revision = 'a5c9e2f41b07'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    op.create_table(
        'authorized_payments',
        sa.Column('id', BigId, primary_key=True),
        sa.Column('mp_authorized_payment_id', sa.String(length=64), nullable=False),
        sa.Column('mp_preapproval_id', sa.String(length=64), nullable=True),
        sa.Column('subscription_id', BigId, nullable=True),
        sa.Column('mp_payment_id', sa.String(length=64), nullable=True),
        sa.Column('status', sa.String(length=32), nullable=True),
        sa.Column('payment_status', sa.String(length=32), nullable=True),
        sa.Column('payment_status_detail', sa.String(length=128), nullable=True),
        sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column('currency', sa.String(length=8), nullable=True),
        sa.Column('debit_date', sa.DateTime(), nullable=True),
        sa.Column('retry_attempt', sa.Integer(), nullable=True),
        sa.Column('reason', sa.String(length=255), nullable=True),
        sa.Column('external_reference', sa.String(length=255), nullable=True),
        sa.Column('mp_last_modified', sa.DateTime(), nullable=True),
        sa.Column('raw', sa.JSON(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ['subscription_id'],
            ['subscriptions.id'],
            name='fk_authorized_payments_subscription_id_subscriptions',
        ),
        sa.UniqueConstraint(
            'mp_authorized_payment_id', name='uq_authorized_payments_mp_authorized_payment_id'
        ),
    )
    with op.batch_alter_table('authorized_payments', schema=None) as batch_op:
        batch_op.create_index(
            'ix_authorized_payments_mp_preapproval_id', ['mp_preapproval_id'], unique=False
        )
        batch_op.create_index(
            'ix_authorized_payments_mp_payment_id', ['mp_payment_id'], unique=False
        )


def downgrade():
    with op.batch_alter_table('authorized_payments', schema=None) as batch_op:
        batch_op.drop_index('ix_authorized_payments_mp_payment_id')
        batch_op.drop_index('ix_authorized_payments_mp_preapproval_id')
    op.drop_table('authorized_payments')
