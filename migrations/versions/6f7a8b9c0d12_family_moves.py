"""Families move their own rdv from its link: the motif's limits, the territory's choice of agents, the moves made

Revision ID: 6f7a8b9c0d12
Revises: 708192031425
Create Date: 2026-12-03 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '6f7a8b9c0d12'
down_revision = '708192031425'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('rdv_moves',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('rdv_id', sa.Integer(), nullable=False),
    sa.Column('via', sa.Enum('agenda', 'api', 'offer', 'link', name='movechannel', native_enum=False, length=20), nullable=False),
    sa.Column('moved_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('from_starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('to_starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['rdv_id'], ['rdvs.id'], name=op.f('fk_rdv_moves_rdv_id_rdvs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rdv_moves'))
    )
    with op.batch_alter_table('rdv_moves', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rdv_moves_rdv_id'), ['rdv_id'], unique=False)

    with op.batch_alter_table('motifs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('move_limit_hours', sa.Integer(), nullable=False, server_default='24'))
        batch_op.add_column(sa.Column('family_moves_max', sa.Integer(), nullable=False, server_default='2'))
        batch_op.add_column(sa.Column('booking_horizon_weeks', sa.Integer(), nullable=False, server_default='8'))

    with op.batch_alter_table('territories', schema=None) as batch_op:
        batch_op.add_column(sa.Column('family_moves_any_agent', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade():
    with op.batch_alter_table('territories', schema=None) as batch_op:
        batch_op.drop_column('family_moves_any_agent')

    with op.batch_alter_table('motifs', schema=None) as batch_op:
        batch_op.drop_column('booking_horizon_weeks')
        batch_op.drop_column('family_moves_max')
        batch_op.drop_column('move_limit_hours')

    with op.batch_alter_table('rdv_moves', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rdv_moves_rdv_id'))

    op.drop_table('rdv_moves')
