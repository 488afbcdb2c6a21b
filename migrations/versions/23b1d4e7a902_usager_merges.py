"""Duplicates found and merged (issue 23.1): usagers' normalised name key, indexed beside the birth date and the
e-mail for the duplicate finder; the tombstone a merged file leaves (merged_into_id, merged_at)

The key of every existing usager is computed here, by the same function the application keeps it with
(lapins.locale.matching.name_key, pure), a thousand rows at a time.

Revision ID: 23b1d4e7a902
Revises: 24b1d3e5f7a9
Create Date: 2026-12-06 14:30:00.000000

"""
from alembic import op
import sqlalchemy as sa

from lapins.locale.matching import name_key

# revision identifiers, used by Alembic.
revision = '23b1d4e7a902'
down_revision = '24b1d3e5f7a9'
branch_labels = None
depends_on = None

CHUNK = 1000


def upgrade():
    with op.batch_alter_table('usagers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name_key', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('merged_into_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('merged_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_usagers_merged_into_id_usagers'), 'usagers', ['merged_into_id'],
                                    ['id'], ondelete='CASCADE')
        batch_op.create_index(batch_op.f('ix_usagers_merged_into_id'), ['merged_into_id'], unique=False)
        batch_op.create_index('ix_usagers_territory_email', ['territory_id', 'email'], unique=False)
    _backfill_name_keys()
    with op.batch_alter_table('usagers', schema=None) as batch_op:
        batch_op.create_index('ix_usagers_territory_birth_name', ['territory_id', 'birth_date', 'name_key'],
                              unique=False)


def _backfill_name_keys():
    connection = op.get_bind()
    usagers = sa.table('usagers', sa.column('id', sa.Integer), sa.column('first_name', sa.String),
                       sa.column('last_name', sa.String), sa.column('name_key', sa.String))
    last_id = 0
    while True:
        rows = connection.execute(sa.select(usagers.c.id, usagers.c.first_name, usagers.c.last_name)
                                  .where(usagers.c.id > last_id).order_by(usagers.c.id).limit(CHUNK)).all()
        if not rows:
            return
        connection.execute(usagers.update().where(usagers.c.id == sa.bindparam('usager_id'))
                           .values(name_key=sa.bindparam('key')),
                           [{'usager_id': row.id, 'key': name_key(row.first_name, row.last_name)} for row in rows])
        last_id = rows[-1].id


def downgrade():
    with op.batch_alter_table('usagers', schema=None) as batch_op:
        batch_op.drop_index('ix_usagers_territory_birth_name')
        batch_op.drop_index('ix_usagers_territory_email')
        batch_op.drop_index(batch_op.f('ix_usagers_merged_into_id'))
        batch_op.drop_constraint(batch_op.f('fk_usagers_merged_into_id_usagers'), type_='foreignkey')
        batch_op.drop_column('merged_at')
        batch_op.drop_column('merged_into_id')
        batch_op.drop_column('name_key')
