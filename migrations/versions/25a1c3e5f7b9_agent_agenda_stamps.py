"""Agents' own agenda stamps: a booking draws a new stamp for its agents, no longer for the whole territory

Revision ID: 25a1c3e5f7b9
Revises: 20b7e4a1c9d3
Create Date: 2026-12-06 11:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '25a1c3e5f7b9'
down_revision = '20b7e4a1c9d3'
branch_labels = None
depends_on = None


def upgrade():
    # Every agent starts from the same stamp "0": the territory's stamp, also in every cache key, is drawn anew by
    # nothing here, but caches are per process and a deployment restarts them.
    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('agenda_stamp', sa.String(length=16), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.drop_column('agenda_stamp')
