"""Screenshots of the demo for the README (docs/screenshots/), desktop 1366×768 and phone 390×844.

Run by hand, not in CI: `.venv/bin/python scripts/screenshots.py` (needs Debian's Chromium and npm's assets).
It seeds the demo into a temporary SQLite file, serves it on 127.0.0.1, signs in as a demo agent, then walks a
family's journey: its rdv page, « Confirmer l'annulation ? », the freed slot offered to a waiting family (its SMS
in the dev inbox) and the offer's page. Only the visible screen is taken, so the PNG files stay small.
"""
from __future__ import annotations

import sys
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright
from flask import current_app
from sqlalchemy import select
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lapins import create_app  # noqa: E402
from lapins.infra.extensions import db  # noqa: E402
from lapins.models import Organisation, Rdv, RdvStatus, SlotOffer, Territory, WaitlistEntry  # noqa: E402
from lapins.notifications.links import rdv_token  # noqa: E402
from lapins.notifications.offer_links import offer_token  # noqa: E402
from lapins.onboarding import seeding  # noqa: E402
from lapins.waitlist import offers  # noqa: E402
from tests import services  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
DESKTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        app = create_app("testing", SQLALCHEMY_DATABASE_URI=f"sqlite:///{folder}/demo.sqlite3", WTF_CSRF_ENABLED=True)
        with app.app_context():
            db.create_all()
            admin, agent_login, *_ = seeding.seed_demo()  # an administrator, then a puéricultrice
            family_path, letters, territory_id = _family_rdv()
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_port}"
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=services.chromium_executable(),
                                                     args=services.CHROMIUM_ARGS, headless=True)
                family = browser.new_context(base_url=base, locale="fr-FR", viewport=PHONE, is_mobile=True,
                                             has_touch=True)
                phone = family.new_page()
                phone.goto(family_path)
                shot(phone, "famille-rendez-vous-telephone")
                phone.get_by_label("Les 3 premières lettres du nom de famille").fill(letters)
                phone.get_by_role("button", name="Continuer").click()
                phone.get_by_role("button", name="Annuler le rendez-vous").click()
                shot(phone, "famille-confirmer-annulation-telephone")
                phone.get_by_role("button", name="Oui, annuler le rendez-vous").click()
                shot(phone, "famille-annulation-faite-telephone")
                with app.app_context():
                    offer_path = _offer_path()
                if offer_path:
                    phone.goto(offer_path)
                    shot(phone, "famille-creneau-propose-telephone")
                agent = browser.new_context(base_url=base, locale="fr-FR", viewport=DESKTOP)
                desk = agent.new_page()
                desk.goto("/connexion")
                shot(desk, "connexion-ordinateur")
                sign_in(desk, agent_login)
                desk.get_by_role("link", name="Semaine suivante").click()  # a full week ahead, from 9 h
                desk.wait_for_load_state("networkidle")
                desk.evaluate("() => window.scrollTo(0, 420)")
                shot(desk, "agenda-ordinateur")
                for path, name in (("/usagers", "usagers-ordinateur"), ("/dev/messages", "boite-de-dev-ordinateur")):
                    desk.goto(path)
                    desk.wait_for_load_state("networkidle")
                    shot(desk, name)
                agent_phone = browser.new_context(base_url=base, locale="fr-FR", viewport=PHONE, is_mobile=True,
                                                  has_touch=True, storage_state=agent.storage_state())
                small = agent_phone.new_page()
                small.goto("/")
                small.wait_for_load_state("networkidle")
                shot(small, "agenda-telephone")
                manager = browser.new_context(base_url=base, locale="fr-FR", viewport=DESKTOP).new_page()
                manager.goto("/connexion")
                sign_in(manager, admin)
                for path, name in (("/statistiques/", "statistiques-ordinateur"),
                                   (f"/territoires/{territory_id}/parametres", "parametres-territoire-ordinateur")):
                    manager.goto(path)
                    manager.wait_for_load_state("networkidle")
                    shot(manager, name)
                browser.close()
        finally:
            server.shutdown()
            with app.app_context():
                db.engine.dispose()


def _family_rdv() -> tuple[str, str, int]:
    """The link of a coming rdv of the Paris demo whose motif a family waits for, and the letters that open it."""
    territory = db.session.scalar(select(Territory).where(Territory.number == "92"))
    waited = select(WaitlistEntry.motif_id).join(Organisation).where(Organisation.territory_id == territory.id)
    rdv = db.session.scalars(select(Rdv).join(Organisation).where(
        Organisation.territory_id == territory.id, Rdv.status == RdvStatus.UNKNOWN, Rdv.motif_id.in_(waited),
        Rdv.starts_at > datetime.now(timezone.utc).replace(hour=23))).first()
    usager = rdv.usagers[0]
    with current_app.test_request_context():
        path = f"/r/{rdv_token(rdv.id)}"
    return path, (usager.responsible or usager).last_name[:3], territory.id


def _offer_path() -> str | None:
    offers.reallocate()  # the worker's job, run here (outside the quiet hours, a hold is made)
    offer = db.session.scalars(select(SlotOffer).order_by(SlotOffer.id.desc())).first()
    return f"/o/{offer_token(offer.id)}" if offer else None


def sign_in(page, login: tuple[str, str, str]) -> None:
    email, password, _ = login
    page.locator("#email").fill(email)
    page.locator("#password").fill(password)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_load_state("networkidle")


def shot(page, name: str) -> None:
    for attempt in range(3):  # Chromium sometimes refuses a capture while the page settles: try again
        try:
            page.screenshot(path=str(OUT / f"{name}.png"))
            break
        except PlaywrightError:
            if attempt == 2:
                raise
            page.wait_for_timeout(500)
    print(f"docs/screenshots/{name}.png")


if __name__ == "__main__":
    main()
