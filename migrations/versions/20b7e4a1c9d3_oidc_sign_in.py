"""Agents sign in with an OpenID Connect provider: their identities there, territories requiring it, just-in-time
creation rules, the last sign-in of each agent

Revision ID: 20b7e4a1c9d3
Revises: 6f7a8b9c0d12
Create Date: 2026-12-06 11:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '20b7e4a1c9d3'
down_revision = '6f7a8b9c0d12'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('agent_identities',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=False),
    sa.Column('issuer', sa.String(length=255), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('linked_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('linked_by', sa.String(length=20), nullable=False),
    sa.Column('last_signed_in_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('unlinked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('unlinked_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_agent_identities_agent_id_agents'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['unlinked_by_id'], ['agents.id'],
                            name=op.f('fk_agent_identities_unlinked_by_id_agents'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agent_identities'))
    )
    with op.batch_alter_table('agent_identities', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_agent_identities_agent_id'), ['agent_id'], unique=False)
        batch_op.create_index('uq_agent_identities_live_subject', ['issuer', 'subject'], unique=True,
                              sqlite_where=sa.text('unlinked_at IS NULL'),
                              postgresql_where=sa.text('unlinked_at IS NULL'))

    op.create_table('oidc_jit_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('territory_id', sa.Integer(), nullable=False),
    sa.Column('email_domain', sa.String(length=120), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.Enum('admin', 'agent', 'secretary', name='role', native_enum=False, length=20),
              nullable=False),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'],
                            name=op.f('fk_oidc_jit_rules_organisation_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['territory_id'], ['territories.id'],
                            name=op.f('fk_oidc_jit_rules_territory_id_territories'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_oidc_jit_rules')),
    sa.UniqueConstraint('email_domain', name=op.f('uq_oidc_jit_rules_email_domain'))
    )
    with op.batch_alter_table('oidc_jit_rules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oidc_jit_rules_territory_id'), ['territory_id'], unique=False)

    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_signed_in_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_sign_in_method', sa.String(length=20), nullable=True))

    with op.batch_alter_table('territories', schema=None) as batch_op:
        batch_op.add_column(sa.Column('oidc_required', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade():
    with op.batch_alter_table('territories', schema=None) as batch_op:
        batch_op.drop_column('oidc_required')

    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.drop_column('last_sign_in_method')
        batch_op.drop_column('last_signed_in_at')

    with op.batch_alter_table('oidc_jit_rules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oidc_jit_rules_territory_id'))
    op.drop_table('oidc_jit_rules')

    with op.batch_alter_table('agent_identities', schema=None) as batch_op:
        batch_op.drop_index('uq_agent_identities_live_subject')
        batch_op.drop_index(batch_op.f('ix_agent_identities_agent_id'))
    op.drop_table('agent_identities')
