"""Exports: a heartbeat so that an export whose worker died is taken up again

Revision ID: f1c7a2e4b905
Revises: c9f1d3e5a708
Create Date: 2026-12-01 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f1c7a2e4b905'
down_revision = 'c9f1d3e5a708'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('exports', schema=None) as batch_op:
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.create_index('ix_exports_status_heartbeat', ['status', 'heartbeat_at'], unique=False)


def downgrade():
    with op.batch_alter_table('exports', schema=None) as batch_op:
        batch_op.drop_index('ix_exports_status_heartbeat')
        batch_op.drop_column('attempts')
        batch_op.drop_column('heartbeat_at')
