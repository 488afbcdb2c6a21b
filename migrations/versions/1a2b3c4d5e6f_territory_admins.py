"""Territory administrators

Revision ID: 1a2b3c4d5e6f
Revises: 2b3c4d5e6f70
Create Date: 2026-12-01 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '1a2b3c4d5e6f'
down_revision = '2b3c4d5e6f70'
branch_labels = None
depends_on = None


def upgrade():
    # No rows are copied: a territory without a territory administrator stays administered by the administrators of
    # its organisations, as before (lapins.policies), until one of them names one.
    op.create_table(
        'territory_admins',
        sa.Column('agent_id', sa.Integer(), nullable=False),
        sa.Column('territory_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_territory_admins_agent_id_agents'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['territory_id'], ['territories.id'],
                                name=op.f('fk_territory_admins_territory_id_territories'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('agent_id', 'territory_id', name=op.f('pk_territory_admins')),
    )
    with op.batch_alter_table('territory_admins', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_territory_admins_territory_id'), ['territory_id'], unique=False)


def downgrade():
    with op.batch_alter_table('territory_admins', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_territory_admins_territory_id'))
    op.drop_table('territory_admins')
