"""lieux.active: a lieu can be closed (no new rdv, no free slot there; its rdvs stay)

Revision ID: 4d5e6f708192
Revises: 3c4d5e6f7081
Create Date: 2026-12-01 15:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '4d5e6f708192'
down_revision = '3c4d5e6f7081'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('lieux', schema=None) as batch_op:
        batch_op.add_column(sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False))


def downgrade():
    with op.batch_alter_table('lieux', schema=None) as batch_op:
        batch_op.drop_column('active')
