"""accounts: one deployment, many merchants (issue 18)

Creates `accounts` with the default account (id 1, slug `default`), whose empty settings
come from the environment as before; gives every event and stored resource an
`account_id` (1 for every existing row: nothing to do by hand) and makes their
MercadoPago ids unique per account instead of globally.

Revision ID: d1a7c3e9f5b2
Revises: c7d2e5a8b104
Create Date: 2026-12-07 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = 'd1a7c3e9f5b2'
down_revision = 'c7d2e5a8b104'
branch_labels = None
depends_on = None

# The app's naming convention (extensions.NAMING_CONVENTION): on SQLite it names the
# reflected unnamed unique constraints, so that batch mode can drop them.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# table: (the old unique columns, the new constraint's name)
SCOPED = {
    'webhook_events': (('webhook_id',), 'uq_webhook_events_account_webhook'),
    'payments': (('mp_payment_id',), 'uq_payments_account_payment'),
    'subscriptions': (('mp_preapproval_id',), 'uq_subscriptions_account_preapproval'),
    'mp_alerts': (('kind', 'mp_resource_id'), 'uq_mp_alerts_account_kind_resource'),
    'merchant_orders': (('mp_order_id',), 'uq_merchant_orders_account_order'),
    'chargebacks': (('mp_chargeback_id',), 'uq_chargebacks_account_chargeback'),
    'authorized_payments': (
        ('mp_authorized_payment_id',),
        'uq_authorized_payments_account_authorized_payment',
    ),
}


def _unique_name(table, columns):
    """The existing unique constraint on exactly these columns (named by convention on
    SQLite, where it may have been created unnamed)."""
    for constraint in sa.inspect(op.get_bind()).get_unique_constraints(table):
        if tuple(constraint['column_names']) == tuple(columns) and constraint['name']:
            return constraint['name']
    return NAMING['uq'] % {'table_name': table, 'column_0_name': columns[0]}


def upgrade():
    accounts = op.create_table(
        'accounts',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('slug', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column('mp_access_token_encrypted', sa.Text(), nullable=True),
        sa.Column('mp_webhook_secret_encrypted', sa.Text(), nullable=True),
        sa.Column('ghl_location_id', sa.String(length=64), nullable=True),
        sa.Column('ghl_api_token_encrypted', sa.Text(), nullable=True),
        sa.Column('status_tags', sa.Text(), nullable=True),
        sa.Column('tag_mode', sa.String(length=16), nullable=True),
        sa.Column('custom_fields', sa.Text(), nullable=True),
        sa.Column('retention_days', sa.Float(), nullable=True),
        sa.Column('api_token_hash', sa.String(length=64), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False, server_default=sa.func.now()),
        sa.Column('updated_at', sa.DateTime(), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint('slug', name='uq_accounts_slug'),
        sa.UniqueConstraint('api_token_hash', name='uq_accounts_api_token_hash'),
    )
    # The default account: the deployment's environment variables are its settings.
    op.bulk_insert(accounts, [{'id': 1, 'slug': 'default', 'name': 'Default account'}])
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("SELECT setval(pg_get_serial_sequence('accounts', 'id'), 1)")

    for table, (columns, new_name) in SCOPED.items():
        old_name = _unique_name(table, columns)
        with op.batch_alter_table(table, naming_convention=NAMING) as batch_op:
            batch_op.add_column(
                sa.Column('account_id', sa.Integer(), nullable=False, server_default='1')
            )
            batch_op.create_foreign_key(
                f'fk_{table}_account_id_accounts', 'accounts', ['account_id'], ['id']
            )
            batch_op.drop_constraint(old_name, type_='unique')
            batch_op.create_unique_constraint(new_name, ['account_id', *columns])
    with op.batch_alter_table('webhook_events') as batch_op:
        batch_op.create_index(
            'ix_webhook_events_account_status_received_at',
            ['account_id', 'status', 'received_at'],
        )
    with op.batch_alter_table('erasures') as batch_op:
        batch_op.add_column(sa.Column('account_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            'fk_erasures_account_id_accounts', 'accounts', ['account_id'], ['id']
        )


def downgrade():
    with op.batch_alter_table('erasures') as batch_op:
        batch_op.drop_constraint('fk_erasures_account_id_accounts', type_='foreignkey')
        batch_op.drop_column('account_id')
    with op.batch_alter_table('webhook_events') as batch_op:
        batch_op.drop_index('ix_webhook_events_account_status_received_at')
    for table, (columns, new_name) in SCOPED.items():
        # Fails if two accounts hold the same id: their rows must go first.
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_constraint(new_name, type_='unique')
            batch_op.drop_constraint(f'fk_{table}_account_id_accounts', type_='foreignkey')
            batch_op.drop_column('account_id')
            batch_op.create_unique_constraint(
                NAMING['uq'] % {'table_name': table, 'column_0_name': columns[0]}
                if len(columns) == 1
                else 'uq_mp_alerts_kind_resource',
                list(columns),
            )
    op.drop_table('accounts')
