"""Two guardians (issue 23.3): a child's second responsible adult; an rdv's « ne prévenir que … » guardian and the
guardian whose own link last changed it.

Adds nullable columns only: every child keeps its one responsible, every rdv tells everyone as before.

Revision ID: 23c3a9d1e6f2
Revises: 23e5c0a7d1f9
Create Date: 2026-12-06 17:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '23c3a9d1e6f2'
down_revision = '23e5c0a7d1f9'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('usagers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('second_responsible_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_usagers_second_responsible_id_usagers'), 'usagers',
                                    ['second_responsible_id'], ['id'], ondelete='SET NULL')
        batch_op.create_index(batch_op.f('ix_usagers_second_responsible_id'), ['second_responsible_id'],
                              unique=False)
    with op.batch_alter_table('rdvs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('notify_only_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('link_actor_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_rdvs_notify_only_id_usagers'), 'usagers', ['notify_only_id'],
                                    ['id'], ondelete='SET NULL')
        batch_op.create_foreign_key(batch_op.f('fk_rdvs_link_actor_id_usagers'), 'usagers', ['link_actor_id'],
                                    ['id'], ondelete='SET NULL')


def downgrade():
    with op.batch_alter_table('rdvs', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_rdvs_link_actor_id_usagers'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_rdvs_notify_only_id_usagers'), type_='foreignkey')
        batch_op.drop_column('link_actor_id')
        batch_op.drop_column('notify_only_id')
    with op.batch_alter_table('usagers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_usagers_second_responsible_id'))
        batch_op.drop_constraint(batch_op.f('fk_usagers_second_responsible_id_usagers'), type_='foreignkey')
        batch_op.drop_column('second_responsible_id')
