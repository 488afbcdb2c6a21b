"""Audit trail of changes to rdvs and usagers

Revision ID: b8e0f4c6d927
Revises: a7d9e3b5c816
Create Date: 2026-12-01 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b8e0f4c6d927'
down_revision = 'a7d9e3b5c816'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('audit_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('territory_id', sa.Integer(), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=True),
    sa.Column('object_type', sa.Enum('rdv', 'usager', name='auditobject', native_enum=False, length=20), nullable=False),
    sa.Column('object_id', sa.Integer(), nullable=False),
    sa.Column('action', sa.Enum('created', 'updated', 'moved', 'cancelled', 'restored', 'status_changed', 'confirmed',
                                'deleted', name='auditaction', native_enum=False, length=20), nullable=False),
    sa.Column('changes', sa.JSON(), nullable=False),
    sa.Column('party', sa.Enum('agent', 'family', 'system', name='canceller', native_enum=False, length=20), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=True),
    sa.Column('via', sa.Enum('agenda', 'link', 'offer', 'sms', 'provider', 'api', name='auditchannel', native_enum=False,
                             length=20), nullable=True),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_audit_events_agent_id_agents'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_audit_events_organisation_id_organisations')),
    sa.ForeignKeyConstraint(['territory_id'], ['territories.id'], name=op.f('fk_audit_events_territory_id_territories')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events'))
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_agent_id'), ['agent_id'], unique=False)
        batch_op.create_index('ix_audit_events_object', ['object_type', 'object_id', 'occurred_at'], unique=False)
        batch_op.create_index('ix_audit_events_territory_occurred', ['territory_id', 'occurred_at'], unique=False)


def downgrade():
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_events_territory_occurred')
        batch_op.drop_index('ix_audit_events_object')
        batch_op.drop_index(batch_op.f('ix_audit_events_agent_id'))

    op.drop_table('audit_events')
