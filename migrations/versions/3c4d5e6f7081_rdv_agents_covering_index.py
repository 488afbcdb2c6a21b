"""rdv_agents: the agent/time index also holds the end, liveness and rdv, so busy times are read from it alone

Revision ID: 3c4d5e6f7081
Revises: 1a2b3c4d5e6f
Create Date: 2026-12-01 10:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '3c4d5e6f7081'
down_revision = '1a2b3c4d5e6f'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('rdv_agents', schema=None) as batch_op:
        batch_op.drop_index('ix_rdv_agents_agent_starts')
        batch_op.create_index('ix_rdv_agents_agent_starts', ['agent_id', 'starts_at', 'ends_at', 'live', 'rdv_id'],
                              unique=False)


def downgrade():
    with op.batch_alter_table('rdv_agents', schema=None) as batch_op:
        batch_op.drop_index('ix_rdv_agents_agent_starts')
        batch_op.create_index('ix_rdv_agents_agent_starts', ['agent_id', 'starts_at'], unique=False)
