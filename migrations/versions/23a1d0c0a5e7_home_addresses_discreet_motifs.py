"""Home visits and discreet motifs (issue 23.2 and 23.4): a usager's postal address, a motif « discret », and an
agent's choice to have personal data written to their CalDAV calendar.

Adds columns only: every usager starts without an address, every motif named as before, every CalDAV calendar
without personal data.

Revision ID: 23a1d0c0a5e7
Revises: 18a0e5c0571d
Create Date: 2026-12-06 14:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '23a1d0c0a5e7'
down_revision = '18a0e5c0571d'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('usagers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('address_street', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('address_postcode', sa.String(length=5), nullable=True))
        batch_op.add_column(sa.Column('address_commune', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('commune_insee', sa.String(length=5), nullable=True))
        batch_op.add_column(sa.Column('address_access', sa.String(length=200), nullable=True))
    with op.batch_alter_table('motifs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('discreet', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('caldav_accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('with_personal_data', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade():
    with op.batch_alter_table('caldav_accounts', schema=None) as batch_op:
        batch_op.drop_column('with_personal_data')
    with op.batch_alter_table('motifs', schema=None) as batch_op:
        batch_op.drop_column('discreet')
    with op.batch_alter_table('usagers', schema=None) as batch_op:
        batch_op.drop_column('address_access')
        batch_op.drop_column('commune_insee')
        batch_op.drop_column('address_commune')
        batch_op.drop_column('address_postcode')
        batch_op.drop_column('address_street')
