"""Notify lapins_agents at every change of the tables a signed-in agent is read from (PostgreSQL only)

Each web process caches the events feed's signed-in agent until it hears of a change (lapins.change_notices).
The statements are written out here as they were at this revision; the models create the same on create_all.

Revision ID: 5e6f70819203
Revises: 4d5e6f708192
Create Date: 2026-12-01 17:30:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '5e6f70819203'
down_revision = '4d5e6f708192'
branch_labels = None
depends_on = None

TABLES = ("agents", "agent_roles", "organisations", "territories", "territory_admins")


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite: one process, which reads the agent at every request
    op.execute("""CREATE OR REPLACE FUNCTION lapins_notify_agents() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('lapins_agents', '');
    RETURN NULL;
END
$$""")
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS lapins_notify_agents ON {table}")
        op.execute(f"CREATE TRIGGER lapins_notify_agents AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION lapins_notify_agents()")


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS lapins_notify_agents ON {table}")
    op.execute("DROP FUNCTION IF EXISTS lapins_notify_agents()")
