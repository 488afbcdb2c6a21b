"""Notifications: the outbox of SMS and emails, reminder and SMS settings of territories and motifs

Revision ID: ac536bed32d3
Revises: 3b0882f4e751
Create Date: 2026-11-22 06:33:58.330091

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'ac536bed32d3'
down_revision = '3b0882f4e751'
branch_labels = None
depends_on = None


def upgrade():
    # Columns added to existing tables carry a server default, so databases already holding rows upgrade.
    op.create_table('messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('territory_id', sa.Integer(), nullable=False),
    sa.Column('rdv_id', sa.Integer(), nullable=True),
    sa.Column('usager_id', sa.Integer(), nullable=True),
    sa.Column('channel', sa.Enum('sms', 'email', name='channel', native_enum=False, length=10), nullable=False),
    sa.Column('kind', sa.Enum('created', 'changed', 'cancelled', 'reminder', name='messagekind', native_enum=False, length=20), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('dedupe_key', sa.String(length=120), nullable=True),
    sa.Column('to_address', sa.String(length=254), nullable=True),
    sa.Column('subject', sa.String(length=255), nullable=True),
    sa.Column('body', sa.Text(), nullable=True),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.Enum('pending', 'queued', 'sent', 'delivered', 'failed', 'undeliverable', 'skipped', name='messagestatus', native_enum=False, length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('queued_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('provider_id', sa.String(length=64), nullable=True),
    sa.Column('segments', sa.Integer(), nullable=True),
    sa.Column('error', sa.String(length=255), nullable=True),
    sa.Column('error_code', sa.String(length=20), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['agents.id'], name=op.f('fk_messages_created_by_id_agents'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['rdv_id'], ['rdvs.id'], name=op.f('fk_messages_rdv_id_rdvs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['territory_id'], ['territories.id'], name=op.f('fk_messages_territory_id_territories')),
    sa.ForeignKeyConstraint(['usager_id'], ['usagers.id'], name=op.f('fk_messages_usager_id_usagers'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_messages')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_messages_dedupe_key'))
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_messages_provider_id'), ['provider_id'], unique=False)
        batch_op.create_index('ix_messages_rdv', ['rdv_id', 'created_at'], unique=False)
        batch_op.create_index('ix_messages_status_due', ['status', 'due_at'], unique=False)
        batch_op.create_index('ix_messages_territory_due', ['territory_id', 'due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_usager_id'), ['usager_id'], unique=False)

    with op.batch_alter_table('motifs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('notify', sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column('reminder_offsets', sa.String(length=40), nullable=True))

    with op.batch_alter_table('organisations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('phone', sa.String(length=20), nullable=True))

    with op.batch_alter_table('rdvs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('revision', sa.Integer(), nullable=False, server_default='0'))

    with op.batch_alter_table('territories', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sms_sender', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('twilio_messaging_service_sid', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('sms_takes_replies', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('reminder_offsets', sa.String(length=40), nullable=False, server_default='48'))
        batch_op.add_column(sa.Column('quiet_hours_start', sa.Time(), nullable=False, server_default='20:00:00'))
        batch_op.add_column(sa.Column('quiet_hours_end', sa.Time(), nullable=False, server_default='08:00:00'))

    with op.batch_alter_table('usagers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('phone_undeliverable_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('phone_error', sa.String(length=255), nullable=True))

    # ### end Alembic commands ###


def downgrade():
    # ### commands auto generated by Alembic - please adjust! ###
    with op.batch_alter_table('usagers', schema=None) as batch_op:
        batch_op.drop_column('phone_error')
        batch_op.drop_column('phone_undeliverable_at')

    with op.batch_alter_table('territories', schema=None) as batch_op:
        batch_op.drop_column('quiet_hours_end')
        batch_op.drop_column('quiet_hours_start')
        batch_op.drop_column('reminder_offsets')
        batch_op.drop_column('sms_takes_replies')
        batch_op.drop_column('twilio_messaging_service_sid')
        batch_op.drop_column('sms_sender')

    with op.batch_alter_table('rdvs', schema=None) as batch_op:
        batch_op.drop_column('revision')

    with op.batch_alter_table('organisations', schema=None) as batch_op:
        batch_op.drop_column('phone')

    with op.batch_alter_table('motifs', schema=None) as batch_op:
        batch_op.drop_column('reminder_offsets')
        batch_op.drop_column('notify')

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_usager_id'))
        batch_op.drop_index('ix_messages_territory_due')
        batch_op.drop_index('ix_messages_status_due')
        batch_op.drop_index('ix_messages_rdv')
        batch_op.drop_index(batch_op.f('ix_messages_provider_id'))

    op.drop_table('messages')
    # ### end Alembic commands ###
