"""Territories: the agenda stamp that agenda feeds are cached on

Revision ID: 5d2e8c1f9a47
Revises: ac536bed32d3
Create Date: 2026-12-01 06:45:00.000000

"""
import secrets

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5d2e8c1f9a47'
down_revision = 'ac536bed32d3'
branch_labels = None
depends_on = None


def upgrade():
    # Territories already there get a stamp of their own (drawn now); the application draws every later one.
    with op.batch_alter_table('territories', schema=None) as batch_op:
        batch_op.add_column(sa.Column('agenda_stamp', sa.String(length=16), nullable=False,
                                      server_default=secrets.token_hex(8)))
    with op.batch_alter_table('territories', schema=None) as batch_op:
        batch_op.alter_column('agenda_stamp', server_default=None)


def downgrade():
    with op.batch_alter_table('territories', schema=None) as batch_op:
        batch_op.drop_column('agenda_stamp')
