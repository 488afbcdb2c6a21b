"""Territories: their own Twilio credentials (encrypted) and SMS templates

Revision ID: 2b3c4d5e6f70
Revises: f1c7a2e4b905
Create Date: 2026-12-01 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '2b3c4d5e6f70'
down_revision = 'f1c7a2e4b905'
branch_labels = None
depends_on = None


COLUMNS = (
    ('twilio_account_sid_encrypted', sa.Text()),
    ('twilio_account_sid_saved_at', sa.DateTime(timezone=True)),
    ('twilio_auth_token_encrypted', sa.Text()),
    ('twilio_auth_token_saved_at', sa.DateTime(timezone=True)),
    ('sms_label', sa.String(length=40)),
    ('sms_note_created', sa.String(length=100)),
    ('sms_note_changed', sa.String(length=100)),
    ('sms_note_cancelled', sa.String(length=100)),
    ('sms_note_reminder', sa.String(length=100)),
)


def upgrade():
    # All nullable: territories already there keep the deployment's credentials and the standard wording.
    with op.batch_alter_table('territories', schema=None) as batch_op:
        for name, type_ in COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))


def downgrade():
    with op.batch_alter_table('territories', schema=None) as batch_op:
        for name, _ in reversed(COLUMNS):
            batch_op.drop_column(name)
