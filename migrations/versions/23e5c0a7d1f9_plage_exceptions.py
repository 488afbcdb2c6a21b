"""A plage's dates removed or held at other local hours, one by one (issue 23.5: « cette date seulement »).

Adds one table; existing plages have no exception and open as before.

Revision ID: 23e5c0a7d1f9
Revises: 23c0ca7a1060
Create Date: 2026-12-06 17:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '23e5c0a7d1f9'
down_revision = '23c0ca7a1060'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'plage_exceptions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('plage_id', sa.Integer(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('start_time', sa.Time(), nullable=True),
        sa.Column('end_time', sa.Time(), nullable=True),
        sa.CheckConstraint(
            '(start_time IS NULL AND end_time IS NULL) OR '
            '(start_time IS NOT NULL AND end_time IS NOT NULL AND start_time < end_time)',
            name=op.f('ck_plage_exceptions_removed_or_times_in_order')),
        sa.ForeignKeyConstraint(['plage_id'], ['plages_ouverture.id'],
                                name=op.f('fk_plage_exceptions_plage_id_plages_ouverture'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_plage_exceptions')),
        sa.UniqueConstraint('plage_id', 'day', name=op.f('uq_plage_exceptions_plage_id')),
    )


def downgrade():
    op.drop_table('plage_exceptions')
