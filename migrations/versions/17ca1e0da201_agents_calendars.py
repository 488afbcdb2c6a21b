"""Agents' calendars: secret ICS feeds, CalDAV accounts, the changes to write there, busy times read back

Revision ID: 17ca1e0da201
Revises: 6f7a8b9c0d12
Create Date: 2026-12-06 11:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '17ca1e0da201'
down_revision = '25a1c3e5f7b9'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('calendar_feeds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('with_family_names', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_calendar_feeds_agent_id_agents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_calendar_feeds')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_calendar_feeds_token_hash'))
    )
    with op.batch_alter_table('calendar_feeds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_calendar_feeds_agent_id'), ['agent_id'], unique=False)

    op.create_table('caldav_accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=False),
    sa.Column('url', sa.String(length=500), nullable=False),
    sa.Column('username', sa.String(length=200), nullable=False),
    sa.Column('password_encrypted', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_success_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=255), nullable=True),
    sa.Column('sync_token', sa.Text(), nullable=True),
    sa.Column('busy_read_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_caldav_accounts_agent_id_agents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_caldav_accounts')),
    sa.UniqueConstraint('agent_id', name=op.f('uq_caldav_accounts_agent_id'))
    )

    op.create_table('caldav_pushes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('rdv_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('pending', 'done', 'failed', name='pushstatus', native_enum=False, length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['caldav_accounts.id'], name=op.f('fk_caldav_pushes_account_id_caldav_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_caldav_pushes'))
    )
    with op.batch_alter_table('caldav_pushes', schema=None) as batch_op:
        batch_op.create_index('ix_caldav_pushes_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_caldav_pushes_account_status', ['account_id', 'status'], unique=False)

    op.create_table('calendar_busy_blocks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['caldav_accounts.id'], name=op.f('fk_calendar_busy_blocks_account_id_caldav_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_calendar_busy_blocks_agent_id_agents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_calendar_busy_blocks'))
    )
    with op.batch_alter_table('calendar_busy_blocks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_calendar_busy_blocks_account_id'), ['account_id'], unique=False)
        batch_op.create_index('ix_calendar_busy_blocks_agent_starts', ['agent_id', 'starts_at', 'ends_at'], unique=False)


def downgrade():
    op.drop_table('calendar_busy_blocks')
    op.drop_table('caldav_pushes')
    op.drop_table('caldav_accounts')
    op.drop_table('calendar_feeds')
