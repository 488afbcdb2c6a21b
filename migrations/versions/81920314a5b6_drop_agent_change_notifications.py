"""Drop the lapins_agents notifications: the events feed reads its signed-in agent at every request

The web processes no longer keep the feed's signed-in agent until PostgreSQL tells of a change (lapins.change_notices
is gone): a removed role or a deactivated account must be refused from the very next request, whichever process
serves it. Downgrading puts back the triggers of 5e6f70819203.

Revision ID: 81920314a5b6
Revises: 6f7081920314
Create Date: 2026-12-06 09:00:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '81920314a5b6'
down_revision = '6f7081920314'
branch_labels = None
depends_on = None

TABLES = ("agents", "agent_roles", "organisations", "territories", "territory_admins")


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite never had them
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS lapins_notify_agents ON {table}")
    op.execute("DROP FUNCTION IF EXISTS lapins_notify_agents()")


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("""CREATE OR REPLACE FUNCTION lapins_notify_agents() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('lapins_agents', '');
    RETURN NULL;
END
$$""")
    for table in TABLES:
        op.execute(f"CREATE TRIGGER lapins_notify_agents AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION lapins_notify_agents()")
