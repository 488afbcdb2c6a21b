"""Reminders that follow the evidence (issue 18): the territory's cost sentence, whom it asks to confirm, its
no-show rate before Lapins; the ids of usagers and rdvs imported from another tool; the A/B experiment on the reminder's wording

Adds columns only: every territory keeps the reminder offsets and quiet hours it has (a new territory gets J-3 and
J-1 from the model's defaults), and the new settings start empty or off.

Revision ID: 18a0e5c0571d
Revises: 6f7a8b9c0d12
Create Date: 2026-12-06 11:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '18a0e5c0571d'
down_revision = '17ca1e0da201'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('territories', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sms_cost_note', sa.String(length=100), nullable=True))
        # True: every territory taking replies goes on asking every family to confirm, as it did.
        batch_op.add_column(sa.Column('sms_confirm_everyone', sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column('noshow_baseline_bp', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('noshow_baseline_label', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('experiment_note_b', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('experiment_started_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('experiment_ended_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('usagers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('external_id', sa.String(length=80), nullable=True))
        batch_op.create_index('uq_usagers_territory_external', ['territory_id', 'external_id'], unique=True)
    with op.batch_alter_table('rdvs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('external_id', sa.String(length=80), nullable=True))
        batch_op.create_index('uq_rdvs_organisation_external', ['organisation_id', 'external_id'], unique=True)


def downgrade():
    with op.batch_alter_table('rdvs', schema=None) as batch_op:
        batch_op.drop_index('uq_rdvs_organisation_external')
        batch_op.drop_column('external_id')
    with op.batch_alter_table('usagers', schema=None) as batch_op:
        batch_op.drop_index('uq_usagers_territory_external')
        batch_op.drop_column('external_id')
    with op.batch_alter_table('territories', schema=None) as batch_op:
        batch_op.drop_column('experiment_ended_at')
        batch_op.drop_column('experiment_started_at')
        batch_op.drop_column('experiment_note_b')
        batch_op.drop_column('noshow_baseline_label')
        batch_op.drop_column('noshow_baseline_bp')
        batch_op.drop_column('sms_confirm_everyone')
        batch_op.drop_column('sms_cost_note')
