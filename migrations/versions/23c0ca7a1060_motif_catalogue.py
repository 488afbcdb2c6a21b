"""A territory's motif catalogue (issue 23.6): entries defined once by the territory's administrators, with the fields
organisations may adjust; a motif's link to the entry it was adopted from.

Adds a table and a nullable column only: existing motifs stay as they are, linked to no entry.

Revision ID: 23c0ca7a1060
Revises: 15a0c3e5d7f1
Create Date: 2026-12-06 17:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '23c0ca7a1060'
down_revision = '15a0c3e5d7f1'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'motif_catalogue',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('territory_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=160), nullable=False),
        sa.Column('duration_minutes', sa.Integer(), nullable=False),
        sa.Column('location_type', sa.Enum('on_site', 'phone', 'home', name='locationtype', native_enum=False,
                                           length=20), nullable=False),
        sa.Column('color', sa.String(length=7), nullable=False),
        sa.Column('reminder_offsets', sa.String(length=40), nullable=True),
        sa.Column('cancellation_limit_hours', sa.Integer(), nullable=False),
        sa.Column('move_limit_hours', sa.Integer(), nullable=False),
        sa.Column('family_moves_max', sa.Integer(), nullable=False),
        sa.Column('booking_horizon_weeks', sa.Integer(), nullable=False),
        sa.Column('notify', sa.Boolean(), nullable=False),
        sa.Column('discreet', sa.Boolean(), nullable=False),
        sa.Column('online_bookable', sa.Boolean(), nullable=False),
        sa.Column('online_min_hours', sa.Integer(), nullable=False),
        sa.Column('online_max_days', sa.Integer(), nullable=False),
        sa.Column('sectorised', sa.Boolean(), nullable=False),
        sa.Column('adjustable', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['territory_id'], ['territories.id'],
                                name=op.f('fk_motif_catalogue_territory_id_territories')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_motif_catalogue')),
        sa.UniqueConstraint('territory_id', 'name', name='uq_motif_catalogue_territory_name'),
    )
    with op.batch_alter_table('motif_catalogue', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_motif_catalogue_territory_id'), ['territory_id'], unique=False)
    with op.batch_alter_table('motifs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('catalogue_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_motifs_catalogue_id'), ['catalogue_id'], unique=False)
        batch_op.create_index('uq_motifs_organisation_catalogue', ['organisation_id', 'catalogue_id'], unique=True)
        batch_op.create_foreign_key(batch_op.f('fk_motifs_catalogue_id_motif_catalogue'), 'motif_catalogue',
                                    ['catalogue_id'], ['id'])


def downgrade():
    with op.batch_alter_table('motifs', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_motifs_catalogue_id_motif_catalogue'), type_='foreignkey')
        batch_op.drop_index('uq_motifs_organisation_catalogue')
        batch_op.drop_index(batch_op.f('ix_motifs_catalogue_id'))
        batch_op.drop_column('catalogue_id')
    with op.batch_alter_table('motif_catalogue', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_motif_catalogue_territory_id'))
    op.drop_table('motif_catalogue')
