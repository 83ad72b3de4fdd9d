"""processing pauses: paused stages and their history

`processing_pauses` holds one row per paused stage (`all`, `mercadopago`,
`gohighlevel`), so a pause survives a Redis flush; `processing_pause_log` keeps
every pause and resume with who, when and why.

Revision ID: f4b8d2c61a57
Revises: a5c8e1f37d42
Create Date: 2026-12-04 21:15:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f4b8d2c61a57'
down_revision = 'a5c8e1f37d42'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('processing_pauses',
    sa.Column('stage', sa.String(length=16), nullable=False),
    sa.Column('paused_by', sa.String(length=255), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('paused_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('stage', name=op.f('pk_processing_pauses'))
    )
    op.create_table('processing_pause_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('stage', sa.String(length=16), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=True),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_processing_pause_log'))
    )
    with op.batch_alter_table('processing_pause_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_processing_pause_log_at'), ['at'], unique=False)


def downgrade():
    with op.batch_alter_table('processing_pause_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_processing_pause_log_at'))
    op.drop_table('processing_pause_log')
    op.drop_table('processing_pauses')
