"""Two-way SMS: rdvs confirmed by the family's OUI, the numbered questions asked when ANNULER is ambiguous

Revision ID: b7e3c9d2a114
Revises: 8c4f1a2b6d30
Create Date: 2026-12-01 07:15:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b7e3c9d2a114'
down_revision = '8c4f1a2b6d30'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('sms_reply_rounds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('territory_id', sa.Integer(), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=False),
    sa.Column('rdv_ids', sa.String(length=120), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['territory_id'], ['territories.id'], name=op.f('fk_sms_reply_rounds_territory_id_territories'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_reply_rounds'))
    )
    with op.batch_alter_table('sms_reply_rounds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sms_reply_rounds_phone'), ['phone'], unique=False)

    with op.batch_alter_table('rdvs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('rdvs', schema=None) as batch_op:
        batch_op.drop_column('confirmed_at')

    with op.batch_alter_table('sms_reply_rounds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sms_reply_rounds_phone'))

    op.drop_table('sms_reply_rounds')
