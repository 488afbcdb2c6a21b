"""Cancellations: who and through which channel, the motif's cancellation limit, agents' e-mail preference, the
identity check's wrong tries per family link

Revision ID: 8c4f1a2b6d30
Revises: 5d2e8c1f9a47
Create Date: 2026-12-02 07:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '8c4f1a2b6d30'
down_revision = '5d2e8c1f9a47'
branch_labels = None
depends_on = None


def upgrade():
    # Columns added to existing tables carry a server default, so databases already holding rows upgrade.
    op.create_table('rdv_link_checks',
    sa.Column('rdv_id', sa.Integer(), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('last_failure_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['rdv_id'], ['rdvs.id'], name=op.f('fk_rdv_link_checks_rdv_id_rdvs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('rdv_id', name=op.f('pk_rdv_link_checks'))
    )

    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('notify_on_family_cancellation', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))

    with op.batch_alter_table('motifs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cancellation_limit_hours', sa.Integer(), nullable=False, server_default='4'))

    with op.batch_alter_table('rdvs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cancelled_via', sa.Enum('agenda', 'link', 'sms', 'api', name='cancellationchannel', native_enum=False, length=20), nullable=True))
        batch_op.add_column(sa.Column('cancelled_by_party', sa.Enum('agent', 'family', 'system', name='canceller', native_enum=False, length=20), nullable=True))

    # Every cancellation before this release was made by an agent on the rdv page.
    op.execute("UPDATE rdvs SET cancelled_via = 'agenda', cancelled_by_party = 'agent' WHERE cancelled_at IS NOT NULL")


def downgrade():
    with op.batch_alter_table('rdvs', schema=None) as batch_op:
        batch_op.drop_column('cancelled_by_party')
        batch_op.drop_column('cancelled_via')

    with op.batch_alter_table('motifs', schema=None) as batch_op:
        batch_op.drop_column('cancellation_limit_hours')

    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.drop_column('notify_on_family_cancellation')

    op.drop_table('rdv_link_checks')
