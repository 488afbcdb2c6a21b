"""Statistics exports built in the background: who asked, scope, progress, the file

Revision ID: d2f6b8a3c501
Revises: c4a8e1f7b392
Create Date: 2026-12-01 07:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd2f6b8a3c501'
down_revision = 'c4a8e1f7b392'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('exports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('requested_by_id', sa.Integer(), nullable=False),
    sa.Column('territory_id', sa.Integer(), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.Enum('rdvs', name='exportkind', native_enum=False, length=20), nullable=False),
    sa.Column('file_format', sa.String(length=10), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('status', sa.Enum('pending', 'running', 'done', 'failed', name='exportstatus', native_enum=False, length=20), nullable=False),
    sa.Column('progress_done', sa.Integer(), nullable=False),
    sa.Column('progress_total', sa.Integer(), nullable=False),
    sa.Column('filename', sa.String(length=120), nullable=True),
    sa.Column('content', sa.LargeBinary(), nullable=True),
    sa.Column('error', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_exports_organisation_id_organisations')),
    sa.ForeignKeyConstraint(['requested_by_id'], ['agents.id'], name=op.f('fk_exports_requested_by_id_agents')),
    sa.ForeignKeyConstraint(['territory_id'], ['territories.id'], name=op.f('fk_exports_territory_id_territories')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exports'))
    )
    with op.batch_alter_table('exports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_exports_organisation_id'), ['organisation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_exports_requested_by_id'), ['requested_by_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_exports_territory_id'), ['territory_id'], unique=False)

    with op.batch_alter_table('rdvs', schema=None) as batch_op:
        batch_op.create_index('ix_rdvs_organisation_starts', ['organisation_id', 'starts_at', 'status', 'cancelled_at'],
                              unique=False)


def downgrade():
    with op.batch_alter_table('rdvs', schema=None) as batch_op:
        batch_op.drop_index('ix_rdvs_organisation_starts')

    with op.batch_alter_table('exports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_exports_territory_id'))
        batch_op.drop_index(batch_op.f('ix_exports_requested_by_id'))
        batch_op.drop_index(batch_op.f('ix_exports_organisation_id'))

    op.drop_table('exports')
