"""Online booking by families (issue 15): the numbers checked by SMS code (`phone_verifications`) and a motif's
« pour la personne elle-même » (prenatal, family planning: no child asked for).

Adds a table and a column only. The new booking channel (`online`) and message kind (`phone_code`) are values of
columns stored as plain strings: nothing to change for them.

Revision ID: 15e0b7c2d9a4
Revises: 23c3a9d1e6f2
Create Date: 2026-12-06 17:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '15e0b7c2d9a4'
down_revision = '23c3a9d1e6f2'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'phone_verifications',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('territory_id', sa.Integer(), nullable=False),
        sa.Column('phone', sa.String(length=20), nullable=False),
        sa.Column('code_hash', sa.String(length=64), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('tries', sa.Integer(), nullable=False),
        sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['territory_id'], ['territories.id'],
                                name=op.f('fk_phone_verifications_territory_id_territories')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_phone_verifications')),
    )
    with op.batch_alter_table('phone_verifications', schema=None) as batch_op:
        batch_op.create_index('ix_phone_verifications_number', ['territory_id', 'phone', 'created_at'], unique=False)
    with op.batch_alter_table('motifs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('online_for_self', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade():
    with op.batch_alter_table('motifs', schema=None) as batch_op:
        batch_op.drop_column('online_for_self')
    with op.batch_alter_table('phone_verifications', schema=None) as batch_op:
        batch_op.drop_index('ix_phone_verifications_number')
    op.drop_table('phone_verifications')
