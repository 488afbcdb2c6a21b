"""Territories: their SMS operator (Twilio or Brevo) and their own Brevo API key (encrypted)

Revision ID: 24a1b0e7c3d5
Revises: 16a0c011ec71
Create Date: 2026-12-06 14:15:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '24a1b0e7c3d5'
down_revision = '16a0c011ec71'
branch_labels = None
depends_on = None


COLUMNS = (
    ('sms_operator', sa.String(length=20)),
    ('brevo_api_key_encrypted', sa.Text()),
    ('brevo_api_key_saved_at', sa.DateTime(timezone=True)),
)


def upgrade():
    # All nullable: territories already there keep the deployment's operator (SMS_BACKEND).
    with op.batch_alter_table('territories', schema=None) as batch_op:
        for name, type_ in COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))


def downgrade():
    with op.batch_alter_table('territories', schema=None) as batch_op:
        for name, _ in reversed(COLUMNS):
            batch_op.drop_column(name)
