"""merchant orders (with their payments) and chargebacks

The `merchant_order` and `chargebacks` topics store what a merchant needs of each
resource; `merchant_order_payments` links an order to the payments it lists (by
MercadoPago's payment id: the order often arrives before its payments).

Revision ID: f4b2c9d1e8a7
Revises: f4b8c2d61a07
Create Date: 2026-12-04 22:20:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = 'f4b2c9d1e8a7'
down_revision = 'f4b8c2d61a07'
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    op.create_table(
        'merchant_orders',
        sa.Column('id', BIG_ID, nullable=False),
        sa.Column('mp_order_id', sa.String(length=64), nullable=False),
        sa.Column('status', sa.String(length=32), nullable=True),
        sa.Column('order_status', sa.String(length=32), nullable=True),
        sa.Column('total_amount', sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column('paid_amount', sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column('currency', sa.String(length=8), nullable=True),
        sa.Column('external_reference', sa.String(length=255), nullable=True),
        sa.Column('preference_id', sa.String(length=255), nullable=True),
        sa.Column('payment_ids', sa.JSON(), nullable=True),
        sa.Column('mp_last_updated', sa.DateTime(), nullable=True),
        sa.Column('raw', sa.JSON(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('mp_order_id'),
    )
    with op.batch_alter_table('merchant_orders', schema=None) as batch_op:
        batch_op.create_index(
            'ix_merchant_orders_external_reference', ['external_reference'], unique=False
        )
    op.create_table(
        'merchant_order_payments',
        sa.Column('merchant_order_id', BIG_ID, nullable=False),
        sa.Column('mp_payment_id', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['merchant_order_id'], ['merchant_orders.id']),
        sa.PrimaryKeyConstraint('merchant_order_id', 'mp_payment_id'),
    )
    with op.batch_alter_table('merchant_order_payments', schema=None) as batch_op:
        batch_op.create_index(
            'ix_merchant_order_payments_mp_payment_id', ['mp_payment_id'], unique=False
        )
    op.create_table(
        'chargebacks',
        sa.Column('id', BIG_ID, nullable=False),
        sa.Column('mp_chargeback_id', sa.String(length=64), nullable=False),
        sa.Column('mp_payment_id', sa.String(length=64), nullable=True),
        sa.Column('payment_ids', sa.JSON(), nullable=True),
        sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column('currency', sa.String(length=8), nullable=True),
        sa.Column('coverage_applied', sa.Boolean(), nullable=True),
        sa.Column('coverage_eligible', sa.Boolean(), nullable=True),
        sa.Column('documentation_required', sa.Boolean(), nullable=True),
        sa.Column('documentation_status', sa.String(length=32), nullable=True),
        sa.Column('date_documentation_deadline', sa.DateTime(), nullable=True),
        sa.Column('mp_date_created', sa.DateTime(), nullable=True),
        sa.Column('mp_date_last_updated', sa.DateTime(), nullable=True),
        sa.Column('raw', sa.JSON(), nullable=True),
        sa.Column('ghl_contact_id', sa.String(length=64), nullable=True),
        sa.Column('alerted_at', sa.DateTime(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('mp_chargeback_id'),
    )
    with op.batch_alter_table('chargebacks', schema=None) as batch_op:
        batch_op.create_index('ix_chargebacks_mp_payment_id', ['mp_payment_id'], unique=False)


def downgrade():
    with op.batch_alter_table('chargebacks', schema=None) as batch_op:
        batch_op.drop_index('ix_chargebacks_mp_payment_id')
    op.drop_table('chargebacks')
    with op.batch_alter_table('merchant_order_payments', schema=None) as batch_op:
        batch_op.drop_index('ix_merchant_order_payments_mp_payment_id')
    op.drop_table('merchant_order_payments')
    with op.batch_alter_table('merchant_orders', schema=None) as batch_op:
        batch_op.drop_index('ix_merchant_orders_external_reference')
    op.drop_table('merchant_orders')
