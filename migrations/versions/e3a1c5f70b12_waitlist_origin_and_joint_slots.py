"""How an rdv was booked, why a waiting-list entry closed, freed slots of several agents

Revision ID: e3a1c5f70b12
Revises: d2f6b8a3c501
Create Date: 2026-12-01 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e3a1c5f70b12'
down_revision = 'd2f6b8a3c501'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('rdvs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('booked_via', sa.Enum('agenda', 'offer', 'api', name='bookingchannel',
                                                            native_enum=False, length=20),
                                      server_default='agenda', nullable=False))
    op.create_table('waitlist_slot_agents',
    sa.Column('slot_id', sa.Integer(), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_waitlist_slot_agents_agent_id_agents')),
    sa.ForeignKeyConstraint(['slot_id'], ['waitlist_slots.id'], name=op.f('fk_waitlist_slot_agents_slot_id_waitlist_slots'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('slot_id', 'agent_id', name=op.f('pk_waitlist_slot_agents'))
    )
    with op.batch_alter_table('waitlist_slot_agents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_waitlist_slot_agents_agent_id'), ['agent_id'], unique=False)
    # The slots recorded so far had one agent each.
    op.execute("INSERT INTO waitlist_slot_agents (slot_id, agent_id) SELECT id, agent_id FROM waitlist_slots")


def downgrade():
    with op.batch_alter_table('waitlist_slot_agents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_waitlist_slot_agents_agent_id'))
    op.drop_table('waitlist_slot_agents')
    with op.batch_alter_table('rdvs', schema=None) as batch_op:
        batch_op.drop_column('booked_via')
