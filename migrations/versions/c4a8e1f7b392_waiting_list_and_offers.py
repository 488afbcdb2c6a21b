"""Waiting list: entries, freed slots, offers held for a family, and the outbox's offer messages

Revision ID: c4a8e1f7b392
Revises: b7e3c9d2a114
Create Date: 2026-12-01 08:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c4a8e1f7b392'
down_revision = 'b7e3c9d2a114'
branch_labels = None
depends_on = None

HELD = sa.text("status = 'held'")


def upgrade():
    op.create_table('waitlist_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=False),
    sa.Column('usager_id', sa.Integer(), nullable=False),
    sa.Column('motif_id', sa.Integer(), nullable=False),
    sa.Column('lieu_id', sa.Integer(), nullable=True),
    sa.Column('rdv_id', sa.Integer(), nullable=True),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('source', sa.Enum('agent', 'family', name='entrysource', native_enum=False, length=20), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.Enum('active', 'fulfilled', 'withdrawn', name='entrystatus', native_enum=False, length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['agents.id'], name=op.f('fk_waitlist_entries_created_by_id_agents'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['lieu_id'], ['lieux.id'], name=op.f('fk_waitlist_entries_lieu_id_lieux')),
    sa.ForeignKeyConstraint(['motif_id'], ['motifs.id'], name=op.f('fk_waitlist_entries_motif_id_motifs')),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_waitlist_entries_organisation_id_organisations')),
    sa.ForeignKeyConstraint(['rdv_id'], ['rdvs.id'], name=op.f('fk_waitlist_entries_rdv_id_rdvs'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['usager_id'], ['usagers.id'], name=op.f('fk_waitlist_entries_usager_id_usagers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_waitlist_entries'))
    )
    op.create_index('ix_waitlist_entries_match', 'waitlist_entries', ['organisation_id', 'motif_id', 'status'], unique=False)
    op.create_index(op.f('ix_waitlist_entries_usager_id'), 'waitlist_entries', ['usager_id'], unique=False)

    op.create_table('waitlist_slots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=False),
    sa.Column('motif_id', sa.Integer(), nullable=False),
    sa.Column('lieu_id', sa.Integer(), nullable=True),
    sa.Column('agent_id', sa.Integer(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source_rdv_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.Enum('open', 'taken', 'closed', name='slotstatus', native_enum=False, length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_waitlist_slots_agent_id_agents')),
    sa.ForeignKeyConstraint(['lieu_id'], ['lieux.id'], name=op.f('fk_waitlist_slots_lieu_id_lieux')),
    sa.ForeignKeyConstraint(['motif_id'], ['motifs.id'], name=op.f('fk_waitlist_slots_motif_id_motifs')),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_waitlist_slots_organisation_id_organisations')),
    sa.ForeignKeyConstraint(['source_rdv_id'], ['rdvs.id'], name=op.f('fk_waitlist_slots_source_rdv_id_rdvs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_waitlist_slots'))
    )
    op.create_index('ix_waitlist_slots_status_starts', 'waitlist_slots', ['status', 'starts_at'], unique=False)

    op.create_table('slot_offers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('slot_id', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=False),
    sa.Column('usager_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('held', 'accepted', 'declined', 'expired', 'void', name='offerstatus', native_enum=False, length=20), nullable=False),
    sa.Column('offered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('held_until', sa.DateTime(timezone=True), nullable=False),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('rdv_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['entry_id'], ['waitlist_entries.id'], name=op.f('fk_slot_offers_entry_id_waitlist_entries'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['rdv_id'], ['rdvs.id'], name=op.f('fk_slot_offers_rdv_id_rdvs'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['slot_id'], ['waitlist_slots.id'], name=op.f('fk_slot_offers_slot_id_waitlist_slots'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['usager_id'], ['usagers.id'], name=op.f('fk_slot_offers_usager_id_usagers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_slot_offers'))
    )
    op.create_index(op.f('ix_slot_offers_entry_id'), 'slot_offers', ['entry_id'], unique=False)
    op.create_index('ix_slot_offers_status_held_until', 'slot_offers', ['status', 'held_until'], unique=False)
    op.create_index('ix_slot_offers_usager_offered', 'slot_offers', ['usager_id', 'offered_at'], unique=False)
    # One hold per slot: a partial unique index, the same on SQLite and PostgreSQL.
    op.create_index('uq_slot_offers_one_hold', 'slot_offers', ['slot_id'], unique=True, sqlite_where=HELD,
                    postgresql_where=HELD)

    # A nullable column: rows already in the outbox are about rdvs, not offers, and keep NULL.
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('offer_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_messages_offer_id'), ['offer_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_messages_offer_id_slot_offers'), 'slot_offers', ['offer_id'], ['id'],
                                    ondelete='CASCADE')


def downgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_messages_offer_id_slot_offers'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_messages_offer_id'))
        batch_op.drop_column('offer_id')

    op.drop_index('uq_slot_offers_one_hold', table_name='slot_offers', sqlite_where=HELD, postgresql_where=HELD)
    op.drop_index('ix_slot_offers_usager_offered', table_name='slot_offers')
    op.drop_index('ix_slot_offers_status_held_until', table_name='slot_offers')
    op.drop_index(op.f('ix_slot_offers_entry_id'), table_name='slot_offers')
    op.drop_table('slot_offers')
    op.drop_index('ix_waitlist_slots_status_starts', table_name='waitlist_slots')
    op.drop_table('waitlist_slots')
    op.drop_index(op.f('ix_waitlist_entries_usager_id'), table_name='waitlist_entries')
    op.drop_index('ix_waitlist_entries_match', table_name='waitlist_entries')
    op.drop_table('waitlist_entries')
