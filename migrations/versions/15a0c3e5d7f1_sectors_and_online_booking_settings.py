"""Sectorisation and the settings of online booking (issue 15): sectors made of communes and streets, the lieux and
agents serving each; a motif's « réservable en ligne », delays and « sectorisé »; online booking switched per lieu and
per territory, a lieu's position.

Adds tables and columns only: motifs start closed to online booking and not sectorised; lieux and territories start
open (a motif must still be opened for anything to be offered).

Revision ID: 15a0c3e5d7f1
Revises: 23b1d4e7a902
Create Date: 2026-12-06 14:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '15a0c3e5d7f1'
down_revision = '23b1d4e7a902'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'sectors',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('territory_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=120), nullable=False),
        sa.ForeignKeyConstraint(['territory_id'], ['territories.id'], name=op.f('fk_sectors_territory_id_territories')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_sectors')),
    )
    with op.batch_alter_table('sectors', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sectors_territory_id'), ['territory_id'], unique=False)
        batch_op.create_index('uq_sectors_territory_name', ['territory_id', 'name'], unique=True)
    op.create_table(
        'sector_zones',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('sector_id', sa.Integer(), nullable=False),
        sa.Column('territory_id', sa.Integer(), nullable=False),
        sa.Column('commune_code', sa.String(length=5), nullable=False),
        sa.Column('street_code', sa.String(length=20), server_default='', nullable=False),
        sa.ForeignKeyConstraint(['sector_id'], ['sectors.id'], name=op.f('fk_sector_zones_sector_id_sectors'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['territory_id'], ['territories.id'],
                                name=op.f('fk_sector_zones_territory_id_territories')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_sector_zones')),
    )
    with op.batch_alter_table('sector_zones', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sector_zones_sector_id'), ['sector_id'], unique=False)
        batch_op.create_index('uq_sector_zones_place', ['territory_id', 'commune_code', 'street_code'], unique=True)
    for table, column, target in (('lieu_sectors', 'lieu_id', 'lieux'), ('agent_sectors', 'agent_id', 'agents')):
        op.create_table(
            table,
            sa.Column(column, sa.Integer(), nullable=False),
            sa.Column('sector_id', sa.Integer(), nullable=False),
            sa.ForeignKeyConstraint([column], [f'{target}.id'], name=op.f(f'fk_{table}_{column}_{target}'),
                                    ondelete='CASCADE'),
            sa.ForeignKeyConstraint(['sector_id'], ['sectors.id'], name=op.f(f'fk_{table}_sector_id_sectors'),
                                    ondelete='CASCADE'),
            sa.PrimaryKeyConstraint(column, 'sector_id', name=op.f(f'pk_{table}')),
        )
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(batch_op.f(f'ix_{table}_sector_id'), ['sector_id'], unique=False)
    with op.batch_alter_table('motifs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('online_bookable', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('online_min_hours', sa.Integer(), server_default='2', nullable=False))
        batch_op.add_column(sa.Column('online_max_days', sa.Integer(), server_default='42', nullable=False))
        batch_op.add_column(sa.Column('sectorised', sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table('lieux', schema=None) as batch_op:
        batch_op.add_column(sa.Column('online_booking', sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column('latitude', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('longitude', sa.Float(), nullable=True))
    with op.batch_alter_table('territories', schema=None) as batch_op:
        batch_op.add_column(sa.Column('online_booking', sa.Boolean(), server_default=sa.true(), nullable=False))


def downgrade():
    with op.batch_alter_table('territories', schema=None) as batch_op:
        batch_op.drop_column('online_booking')
    with op.batch_alter_table('lieux', schema=None) as batch_op:
        batch_op.drop_column('longitude')
        batch_op.drop_column('latitude')
        batch_op.drop_column('online_booking')
    with op.batch_alter_table('motifs', schema=None) as batch_op:
        batch_op.drop_column('sectorised')
        batch_op.drop_column('online_max_days')
        batch_op.drop_column('online_min_hours')
        batch_op.drop_column('online_bookable')
    op.drop_table('agent_sectors')
    op.drop_table('lieu_sectors')
    op.drop_table('sector_zones')
    op.drop_table('sectors')
