"""The benchmark database: BENCH_DATABASE_URL (PostgreSQL), or a temporary SQLite file when it is absent."""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from flask import Flask
from sqlalchemy import inspect, select, text

from lapins import create_app
from lapins.infra.extensions import db
from lapins.onboarding.seeding import DEPARTEMENT_NUMBER

WARNING = """
################################################################################
#  BENCH_DATABASE_URL n'est pas défini : les mesures tournent sur un fichier   #
#  SQLite temporaire. Les chiffres ne valent PAS pour PostgreSQL et ne doivent  #
#  pas être comparés aux cibles. Lancez `make bench` pour la vraie mesure.      #
################################################################################
"""


class UnsafeDatabase(RuntimeError):
    pass


@dataclass
class BenchDatabase:
    url: str
    temporary_dir: str | None = None
    schema: str | None = None  # PostgreSQL schema holding the tables; None for the default one

    @property
    def is_fallback(self) -> bool:
        return self.temporary_dir is not None

    @property
    def dialect(self) -> str:
        return self.url.split(":", 1)[0].split("+", 1)[0]

    @classmethod
    def from_environment(cls, log) -> BenchDatabase:
        url = os.environ.get("BENCH_DATABASE_URL")
        if url and url.startswith("sqlite"):
            return cls(url)
        if url:
            if url.startswith("postgres://"):  # the form many tools print; SQLAlchemy wants the driver named
                url = "postgresql+psycopg://" + url[len("postgres://"):]
            elif url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url[len("postgresql://"):]
            return cls(url)
        log(WARNING)
        directory = tempfile.mkdtemp(prefix="lapins-bench-")
        return cls(f"sqlite:///{directory}/bench.sqlite3", directory)

    def twin(self, name: str) -> BenchDatabase:
        """A second, separate database beside this one: a schema on PostgreSQL, a file beside it on SQLite."""
        if self.dialect == "sqlite":
            path = self.url.removeprefix("sqlite:///")
            return BenchDatabase(f"sqlite:///{path.removesuffix('.sqlite3')}-{name}.sqlite3")
        return BenchDatabase(self.url, schema=f"lapins_bench_{name}")

    def app(self, **overrides) -> Flask:
        options: dict = {"hide_parameters": True}
        if self.schema:
            options["connect_args"] = {"options": f"-c search_path={self.schema}"}
        settings = {"SQLALCHEMY_DATABASE_URI": self.url, "SQLALCHEMY_ENGINE_OPTIONS": options, "LOG_LEVEL": "WARNING"}
        return create_app("development", **{**settings, **overrides})

    @property
    def process_url(self) -> str:
        """The DATABASE_URL another process (a Celery worker) is given: a twin's schema goes in the search path."""
        if not self.schema:
            return self.url
        from sqlalchemy.engine import make_url

        url = make_url(self.url).update_query_dict({"options": f"-c search_path={self.schema}"})
        return url.render_as_string(hide_password=False)

    def reset(self, app: Flask) -> None:
        """Empty schema from the models; refuses a database holding anything but an earlier benchmark's data."""
        with app.app_context():
            if self.schema:
                with db.engine.begin() as connection:
                    connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {self.schema}"))
            self._refuse_foreign_data()
            db.drop_all()
            db.create_all()

    def drop(self, app: Flask) -> None:
        """Remove a twin: its schema on PostgreSQL, its file on SQLite."""
        with app.app_context():
            db.session.remove()
            if self.schema:
                with db.engine.begin() as connection:
                    connection.execute(text(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE"))
            db.engine.dispose()
        if self.dialect == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(self.url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)

    def _refuse_foreign_data(self) -> None:
        from lapins.models import Territory

        if "territories" not in inspect(db.engine).get_table_names():
            return
        numbers = set(db.session.scalars(select(Territory.number)))
        db.session.rollback()
        if numbers - {DEPARTEMENT_NUMBER}:
            raise UnsafeDatabase(
                f"La base {self.safe_url} contient d'autres territoires que celui du banc d'essai "
                f"({', '.join(sorted(numbers))}) : le banc d'essai efface tout, il refuse de s'y lancer.")

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages."""
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True)

    def cleanup(self) -> None:
        if self.temporary_dir:
            shutil.rmtree(self.temporary_dir, ignore_errors=True)


def statement_counter(app: Flask):
    """A function giving how many SQL statements PostgreSQL has run so far in the benchmark database (every client:
    the served app's, its psycopg-direct reads included), from pg_stat_statements; None when it is not loaded
    (`python -m tests.services --postgres-statement-counts`, as make bench starts PostgreSQL) or on SQLite."""
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            return None
        try:
            with db.engine.begin() as connection:
                connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
                connection.execute(text("SELECT count(*) FROM pg_stat_statements"))
        except Exception:  # noqa: BLE001 — not preloaded: the figure is left out, the rest is measured
            return None

    def count() -> int:
        with app.app_context(), db.engine.connect() as connection:
            return int(connection.execute(text(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
                "WHERE d.datname = current_database()")).scalar())

    return count
