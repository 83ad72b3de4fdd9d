"""retention and erasure: purged_at, the purge's index, the erasures log

- `webhook_events.purged_at`: when retention (or an erasure) dropped the event's
  stored copies (raw body, payload, headers, query, tracebacks), so that the admin
  and the API say "purged on …" instead of showing an empty payload.
- `ix_webhook_events_purge_due`: a partial index on `processed_at` over the
  finished (`success`, `ignored`) events not purged yet. The purge reads its next
  batch as one range scan of it, and a purged row leaves it: already-purged rows
  are never visited again, however large the table grows. On PostgreSQL it is
  built `CONCURRENTLY` (outside the migration's transaction), so that building it
  on a large table does not block the writes of a running service; SQLite has no
  such option (and no concurrent writers worth it).
- `erasures`: that a data subject's erasure happened, when, from which surface and
  by whom, and how many rows it touched; never what was erased (at most a keyed
  hash of the e-mail, to recognise a repeated request).

Revision ID: a5c8e1f37d42
Revises: e7c1f2a90b13
Create Date: 2026-12-04 21:20:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = 'a5c8e1f37d42'
down_revision = 'e7c1f2a90b13'
branch_labels = None
depends_on = None

# The same text as models.PURGE_DUE: the planners use the index only for queries
# whose WHERE repeats its predicate.
PURGE_DUE = "purged_at IS NULL AND status IN ('success', 'ignored')"


def upgrade():
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('purged_at', sa.DateTime(), nullable=True))
    op.create_table(
        'erasures',
        sa.Column(
            'id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False
        ),
        sa.Column('requested_at', sa.DateTime(), nullable=False),
        sa.Column('surface', sa.String(length=16), nullable=False),
        sa.Column('requested_by', sa.String(length=255), nullable=True),
        sa.Column('subject_hash', sa.String(length=64), nullable=True),
        sa.Column('payments', sa.Integer(), nullable=False),
        sa.Column('events', sa.Integer(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('erasures', schema=None) as batch_op:
        batch_op.create_index('ix_erasures_subject_hash', ['subject_hash'], unique=False)
    # Last: on PostgreSQL it commits what came before (CONCURRENTLY cannot run in a
    # transaction), so a failure here leaves at most this index to build again.
    if _postgresql():
        with op.get_context().autocommit_block():
            op.create_index(
                'ix_webhook_events_purge_due',
                'webhook_events',
                ['processed_at'],
                unique=False,
                postgresql_where=sa.text(PURGE_DUE),
                postgresql_concurrently=True,
                if_not_exists=True,  # a failed concurrent build is rerun
            )
    else:
        op.create_index(
            'ix_webhook_events_purge_due',
            'webhook_events',
            ['processed_at'],
            unique=False,
            sqlite_where=sa.text(PURGE_DUE),
        )


def downgrade():
    if _postgresql():
        with op.get_context().autocommit_block():
            op.drop_index(
                'ix_webhook_events_purge_due',
                table_name='webhook_events',
                postgresql_concurrently=True,
                if_exists=True,
            )
    else:
        op.drop_index('ix_webhook_events_purge_due', table_name='webhook_events')
    with op.batch_alter_table('erasures', schema=None) as batch_op:
        batch_op.drop_index('ix_erasures_subject_hash')
    op.drop_table('erasures')
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_column('purged_at')


def _postgresql() -> bool:
    return op.get_context().dialect.name == 'postgresql'
