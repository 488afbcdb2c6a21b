"""Upgrades are safe: the migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from lapins import create_app
from lapins.infra.extensions import db


def test_migrations_build_the_schema_of_the_models_and_downgrade_cleanly(empty_database_url):
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=empty_database_url)
    with app.app_context():
        upgrade()
        with db.engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), db.metadata)
        assert differences == []
        assert notifying_tables() == set()  # the change notifications of 5e6f70819203 are gone (81920314a5b6)
        if db.engine.dialect.name == "postgresql":
            assert db.session.scalar(db.text("SELECT count(*) FROM pg_proc WHERE proname = 'lapins_notify_agents'")) == 0
        downgrade(revision="base")
        with db.engine.connect() as connection:
            assert set(db.inspect(connection).get_table_names()) <= {"alembic_version"}
        if db.engine.dialect.name == "postgresql":
            assert db.session.scalar(db.text("SELECT count(*) FROM pg_proc WHERE proname = 'lapins_notify_agents'")) == 0
        db.session.remove()
        db.engine.dispose()


def notifying_tables() -> set[str]:
    """The tables whose changes PostgreSQL notified to the web processes, from 5e6f70819203 to 81920314a5b6."""
    if db.engine.dialect.name != "postgresql":
        return set()
    return set(db.session.scalars(db.text(
        "SELECT event_object_table FROM information_schema.triggers WHERE trigger_name = 'lapins_notify_agents'")))


def test_upgrading_a_database_that_holds_a_departement_keeps_its_rows(empty_database_url):
    """A département running the previous release upgrades with `flask db upgrade` and loses nothing."""
    from sqlalchemy import func, select

    from lapins.models import Motif, Rdv, Territory
    from lapins.onboarding.seeding import seed_demo

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=empty_database_url)
    with app.app_context():
        upgrade(revision="3b0882f4e751")  # the first release's schema
        with db.engine.begin() as connection:
            connection.execute(db.text(
                "INSERT INTO territories (number, name, timezone) VALUES ('01', 'Ain', 'Europe/Paris')"))
            connection.execute(db.text("INSERT INTO organisations (territory_id, name) SELECT id, 'PMI' FROM territories"))
            connection.execute(db.text(
                "INSERT INTO motifs (organisation_id, name, duration_minutes, location_type, color, active) "
                "SELECT id, 'Pesée', 30, 'on_site', '#000091', true FROM organisations"))
        upgrade()
        territory = db.session.scalar(select(Territory))
        assert territory.reminder_offsets == "48" and territory.sms_takes_replies is False
        assert territory.quiet_hours_start.hour == 20 and territory.quiet_hours_end.hour == 8
        assert db.session.scalar(select(Motif)).notify is True
        seed_demo()  # the new release's code works on the upgraded database
        assert db.session.scalar(select(func.count(Rdv.id))) > 0
        db.session.remove()
        downgrade(revision="base")
        db.engine.dispose()
