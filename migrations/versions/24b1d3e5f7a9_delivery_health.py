"""Delivery health (issue 24): each territory's channel state (operator down since when and why, the daily balance
check and its threshold), and webhooks that fail in a row (their owner told, the endpoint paused).

Revision ID: 24b1d3e5f7a9
Revises: 24a1b0e7c3d5
Create Date: 2026-12-06 14:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '24b1d3e5f7a9'
down_revision = '24a1b0e7c3d5'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'delivery_channel_states',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('territory_id', sa.Integer(), nullable=False),
        sa.Column('channel', sa.String(length=10), nullable=False),
        sa.Column('operator', sa.String(length=30), nullable=False),
        sa.Column('down_since', sa.DateTime(timezone=True), nullable=True),
        sa.Column('cause', sa.String(length=20), nullable=True),
        sa.Column('alerted_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('failing_since', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_success_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('balance_amount', sa.Numeric(precision=14, scale=4), nullable=True),
        sa.Column('balance_unit', sa.String(length=10), nullable=True),
        sa.Column('balance_checked_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('balance_warned_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('balance_threshold', sa.Numeric(precision=14, scale=4), nullable=True),
        sa.ForeignKeyConstraint(['territory_id'], ['territories.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('territory_id', 'channel', name='uq_delivery_channel_states_channel'),
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index('ix_messages_territory_sent', ['territory_id', 'sent_at'], unique=False)
    with op.batch_alter_table('webhooks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('consecutive_failures', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('failing_since', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('failure_notified_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('paused_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('webhooks', schema=None) as batch_op:
        batch_op.drop_column('paused_at')
        batch_op.drop_column('failure_notified_at')
        batch_op.drop_column('failing_since')
        batch_op.drop_column('consecutive_failures')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_territory_sent')
    op.drop_table('delivery_channel_states')
