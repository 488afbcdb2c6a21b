"""Twilio callbacks recorded: a replayed inbound SMS or status callback does nothing

Revision ID: 6f7081920314
Revises: 5e6f70819203
Create Date: 2026-12-02 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '6f7081920314'
down_revision = '5e6f70819203'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('twilio_callbacks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('message_sid', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_twilio_callbacks')),
    sa.UniqueConstraint('kind', 'message_sid', 'status', name='uq_twilio_callbacks_request')
    )


def downgrade():
    op.drop_table('twilio_callbacks')
