"""Verification codes' SMS text blanked once sent or expired (issue 15): a partial index on the few `phone_code`
messages whose text is still kept, so that the minute job blanking the expired ones reads only those.

Revision ID: 15c0de5b0d1e
Revises: 15e0b7c2d9a4
Create Date: 2026-12-06 21:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '15c0de5b0d1e'
down_revision = '15e0b7c2d9a4'
branch_labels = None
depends_on = None

CODES_KEPT = "kind = 'phone_code' AND body IS NOT NULL"


def upgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index('ix_messages_codes_kept', ['expires_at'], unique=False,
                              sqlite_where=sa.text(CODES_KEPT), postgresql_where=sa.text(CODES_KEPT))
    # The codes written before this revision are blanked by that job too, each once it has expired.


def downgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_codes_kept')
