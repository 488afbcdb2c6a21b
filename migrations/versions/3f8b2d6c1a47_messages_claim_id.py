"""The batch that claimed a queued message, named by its fence in Redis (issue 26): once that batch is known dead,
its messages whose send never began are put back at once instead of after the claim's lease.

Revision ID: 3f8b2d6c1a47
Revises: 26e1a5b3c7d9
Create Date: 2026-12-07 12:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '3f8b2d6c1a47'
down_revision = '26e1a5b3c7d9'
branch_labels = None
depends_on = None


def upgrade():
    # Nullable, no default: PostgreSQL adds it without rewriting the table.
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claim_id', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('claim_id')
