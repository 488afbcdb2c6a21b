"""An unclear answer from the SMS provider dated on its message (issue 26): the provider is asked within seconds
whether the SMS left, and the message is never sent again before a whole claim lease after that answer.

Revision ID: 26e1a5b3c7d9
Revises: 15c0de5b0d1e
Create Date: 2026-12-07 06:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '26e1a5b3c7d9'
down_revision = '15c0de5b0d1e'
branch_labels = None
depends_on = None


def upgrade():
    # Nullable, no default: PostgreSQL adds it without rewriting the table.
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unsure_since', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('unsure_since')
