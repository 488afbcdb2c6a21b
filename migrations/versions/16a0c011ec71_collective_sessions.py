"""Collective sessions (issue 16): a motif may be collective, an rdv may have a capacity and participations, each
with its own status, messages and link; the waiting list may wait for one session

Adds columns and two tables only: every existing rdv stays an individual one (no capacity).

Revision ID: 16a0c011ec71
Revises: 23a1d0c0a5e7
Create Date: 2026-12-06 14:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '16a0c011ec71'
down_revision = '23a1d0c0a5e7'
branch_labels = None
depends_on = None


def _enum(*values, name):
    return sa.Enum(*values, name=name, native_enum=False, length=20)


def upgrade():
    with op.batch_alter_table('motifs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('collective', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('places_per_person', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('rdvs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('max_participants', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('places_taken', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('title', sa.String(length=160), nullable=True))
    op.create_table('rdv_participations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('rdv_id', sa.Integer(), nullable=False),
    sa.Column('usager_id', sa.Integer(), nullable=False),
    sa.Column('places', sa.Integer(), nullable=False),
    sa.Column('status', _enum('registered', 'present', 'absent', 'excused', name='participationstatus'), nullable=False),
    sa.Column('via', _enum('agenda', 'offer', 'api', 'import', name='bookingchannel'), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_by_party', _enum('agent', 'family', 'system', name='canceller'), nullable=True),
    sa.Column('cancelled_via', _enum('agenda', 'link', 'sms', 'api', name='cancellationchannel'), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['agents.id'], name=op.f('fk_rdv_participations_created_by_id_agents'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['rdv_id'], ['rdvs.id'], name=op.f('fk_rdv_participations_rdv_id_rdvs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['usager_id'], ['usagers.id'], name=op.f('fk_rdv_participations_usager_id_usagers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rdv_participations'))
    )
    with op.batch_alter_table('rdv_participations', schema=None) as batch_op:
        batch_op.create_index('ix_rdv_participations_rdv_status', ['rdv_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_rdv_participations_usager_id'), ['usager_id'], unique=False)
    op.create_table('participation_usagers',
    sa.Column('participation_id', sa.Integer(), nullable=False),
    sa.Column('usager_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['participation_id'], ['rdv_participations.id'], name=op.f('fk_participation_usagers_participation_id_rdv_participations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['usager_id'], ['usagers.id'], name=op.f('fk_participation_usagers_usager_id_usagers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('participation_id', 'usager_id', name=op.f('pk_participation_usagers'))
    )
    with op.batch_alter_table('participation_usagers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_participation_usagers_usager_id'), ['usager_id'], unique=False)
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('participation_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_messages_participation_id'), ['participation_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_messages_participation_id_rdv_participations'),
                                    'rdv_participations', ['participation_id'], ['id'], ondelete='CASCADE')
    for table in ('waitlist_entries', 'waitlist_slots'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('session_id', sa.Integer(), nullable=True))
            batch_op.create_index(batch_op.f(f'ix_{table}_session_id'), ['session_id'], unique=False)
            batch_op.create_foreign_key(batch_op.f(f'fk_{table}_session_id_rdvs'), 'rdvs', ['session_id'], ['id'],
                                        ondelete='CASCADE')


def downgrade():
    for table in ('waitlist_slots', 'waitlist_entries'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f(f'fk_{table}_session_id_rdvs'), type_='foreignkey')
            batch_op.drop_index(batch_op.f(f'ix_{table}_session_id'))
            batch_op.drop_column('session_id')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_messages_participation_id_rdv_participations'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_messages_participation_id'))
        batch_op.drop_column('participation_id')
    with op.batch_alter_table('participation_usagers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_participation_usagers_usager_id'))
    op.drop_table('participation_usagers')
    with op.batch_alter_table('rdv_participations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rdv_participations_usager_id'))
        batch_op.drop_index('ix_rdv_participations_rdv_status')
    op.drop_table('rdv_participations')
    with op.batch_alter_table('rdvs', schema=None) as batch_op:
        batch_op.drop_column('title')
        batch_op.drop_column('places_taken')
        batch_op.drop_column('max_participants')
    with op.batch_alter_table('motifs', schema=None) as batch_op:
        batch_op.drop_column('places_per_person')
        batch_op.drop_column('collective')
