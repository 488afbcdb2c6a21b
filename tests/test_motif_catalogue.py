"""A territory's motif catalogue (issue 23.6): entries written once by the territory's administrator, adopted by its
organisations, adjusted only where the territory allows, changes previewed then carried to the adopted motifs, an
existing motif linked after comparison, and the same motif compared across organisations in the statistics."""
from __future__ import annotations

import csv
import html
import io
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

import pytest
import time_machine
from sqlalchemy import func, select

from lapins.models import LocationType, Motif, MotifCatalogueEntry, RdvStatus, Role
from lapins.models.territory_admins import TerritoryAdmin
from lapins.stats.exports import RDV_HEADERS, rdv_batches
from lapins.stats.figures import Scope, default_filters
from tests.conftest import AuthActions, csrf_token_from

NOW = datetime(2026, 11, 15, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


class _FormReader(HTMLParser):
    """What a browser would post from the page's form number `index` (hidden inputs, ticked boxes, chosen options)."""

    def __init__(self, index: int):
        super().__init__()
        self.index, self.seen, self.inside, self.data, self.select = index, -1, False, [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.seen += 1
            self.inside = self.seen == self.index
        elif not self.inside:
            return
        elif tag == "input" and attrs.get("name") and "disabled" not in attrs:
            if attrs.get("type") in ("checkbox", "radio") and "checked" not in attrs:
                return
            self.data.append((attrs["name"], attrs.get("value", "y" if attrs.get("type") == "checkbox" else "")))
        elif tag == "select":
            self.select = attrs.get("name")
        elif tag == "option" and self.select and "selected" in attrs:
            self.data.append((self.select, attrs.get("value", "")))

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self.select = None


def posted(html: str, index: int = -1, **changes) -> dict:
    """The form's data as the page would post it, with `changes` typed over it (a value None unticks a box)."""
    forms = html.count("<form")
    reader = _FormReader(index % forms)
    reader.feed(html)
    data: dict = {}
    for name, value in reader.data:
        data.setdefault(name, []).append(value)
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value if isinstance(value, list) else [value]
    return data


@pytest.fixture()
def world(factories, db):
    """A territory with its territory administrator, two organisations (each with its administrator), and another
    territory with a catalogue entry of its own."""
    north = factories.OrganisationFactory(name="PMI Lille")
    territory = north.territory
    south = factories.OrganisationFactory(territory=territory, name="PMI Roubaix")
    chief = factories.AgentFactory(organisation=north, organisation__role=Role.AGENT, last_name="Territoire")
    db.session.add(TerritoryAdmin(agent_id=chief.id, territory_id=territory.id))
    north_admin = factories.AgentFactory(organisation=north, organisation__role=Role.ADMIN, last_name="Nord")
    south_admin = factories.AgentFactory(organisation=south, organisation__role=Role.ADMIN, last_name="Sud")
    elsewhere = factories.OrganisationFactory(name="PMI Saint-Denis")
    foreign = MotifCatalogueEntry(territory_id=elsewhere.territory_id, name="Bilan de santé 4 ans")
    db.session.add(foreign)
    db.session.commit()
    return {"territory": territory, "north": north, "south": south, "chief": chief, "north_admin": north_admin,
            "south_admin": south_admin, "foreign": foreign, "elsewhere": elsewhere}


def login(client, agent) -> None:
    if client.get("/usagers").status_code == 200:  # someone else signed in on this client: out first
        AuthActions(client).logout()
    assert AuthActions(client).login(agent).status_code == 302


def create_entry(client, territory, **values):
    url = f"/admin/territoires/{territory.id}/catalogue/nouveau"
    page = client.get(url).get_data(as_text=True)
    return client.post(url, data=posted(page, **values))


def entries(db) -> list[MotifCatalogueEntry]:
    db.session.expire_all()
    return list(db.session.scalars(select(MotifCatalogueEntry).order_by(MotifCatalogueEntry.id)))


def adopt(client, organisation, entry):
    page = client.get(f"/admin/organisations/{organisation.id}/catalogue").get_data(as_text=True)
    return client.post(f"/admin/organisations/{organisation.id}/catalogue/{entry.id}/adopter",
                       data={"csrf_token": csrf_token_from(page)})


def test_a_territory_administrator_writes_an_entry_once_and_a_name_already_there_is_refused(client, world, db):
    login(client, world["chief"])
    catalogue = client.get(f"/admin/territoires/{world['territory'].id}/catalogue")
    assert catalogue.status_code == 200 and "Aucun motif au catalogue" in catalogue.get_data(as_text=True)

    created = create_entry(client, world["territory"], name="Consultation nourrisson", duration_minutes="30",
                           discreet="y", reminder_offsets="72, 24")
    assert created.status_code == 302
    [entry] = [e for e in entries(db) if e.territory_id == world["territory"].id]
    assert (entry.name, entry.duration_minutes, entry.discreet, entry.reminder_offsets) == (
        "Consultation nourrisson", 30, True, "72,24")
    # By default an organisation may adjust the duration, the colour and the reminders, not the name nor discretion.
    assert set(entry.adjustable) == {"duration_minutes", "color", "reminder_offsets"}

    again = create_entry(client, world["territory"], name="CONSULTATION  nourrisson")
    assert again.status_code == 422
    assert "Un motif du catalogue porte déjà ce nom dans ce territoire." in again.get_data(as_text=True)
    assert len([e for e in entries(db) if e.territory_id == world["territory"].id]) == 1
    # The same name in another territory's catalogue is no conflict.
    assert world["foreign"].name != entry.name


def test_only_whoever_administers_the_territory_writes_its_catalogue(client, world, db):
    entry = MotifCatalogueEntry(territory_id=world["territory"].id, name="Entretien prénatal")
    db.session.add(entry)
    db.session.commit()
    login(client, world["north_admin"])  # an organisation's administrator, the territory having its own
    assert client.get(f"/admin/territoires/{world['territory'].id}/catalogue").status_code == 403
    assert client.get(f"/admin/catalogue/{entry.id}/modifier").status_code == 403
    assert client.get(f"/admin/catalogue/{world['foreign'].id}/modifier").status_code == 404
    # ...but reads it, to adopt from it.
    page = client.get(f"/admin/organisations/{world['north'].id}/catalogue")
    assert page.status_code == 200 and "Entretien prénatal" in page.get_data(as_text=True)
    assert "Bilan de santé 4 ans" not in page.get_data(as_text=True)


def test_an_organisation_adopts_an_entry_and_adjusts_only_what_the_territory_allows(client, world, db, factories):
    entry = MotifCatalogueEntry(territory_id=world["territory"].id, name="Consultation nourrisson",
                                duration_minutes=30, discreet=True, reminder_offsets="48",
                                adjustable=["duration_minutes", "reminder_offsets"])
    db.session.add(entry)
    db.session.commit()
    nurse = factories.AgentFactory(organisation=world["north"], organisation__role=Role.AGENT)
    login(client, nurse)
    assert adopt(client, world["north"], entry).status_code in (403, 404)

    login(client, world["north_admin"])
    adopted = adopt(client, world["north"], entry)
    assert adopted.status_code == 302
    motif = db.session.scalar(select(Motif).where(Motif.organisation_id == world["north"].id))
    assert (motif.catalogue_id, motif.name, motif.duration_minutes, motif.discreet) == (
        entry.id, "Consultation nourrisson", 30, True)
    twice = client.get(adopt(client, world["north"], entry).location).get_data(as_text=True)
    assert "Cette organisation a déjà adopté ce motif" in twice
    assert db.session.scalar(select(func.count()).select_from(Motif)
                             .where(Motif.organisation_id == world["north"].id)) == 1

    form_url = f"/admin/motifs/{motif.id}/modifier"
    page = client.get(form_url).get_data(as_text=True)
    assert "fixé par le catalogue du territoire" in page and 'id="name"' not in page  # the name is not typed here
    saved = client.post(form_url, data=posted(page, duration_minutes="45", reminder_offsets="24"))
    assert saved.status_code == 302
    db.session.expire_all()
    assert (motif.duration_minutes, motif.reminder_offsets, motif.name) == (45, "24", "Consultation nourrisson")

    # A forbidden adjustment posted by hand: a French message, nothing stored (not even the allowed field beside it).
    for field, value in (("name", "Contraception"), ("discreet", None), ("location_type", "home")):
        refused = client.post(form_url, data=posted(page, duration_minutes="50", **{field: value}))
        assert refused.status_code == 422, field
        assert "est fixé par le catalogue du territoire" in refused.get_data(as_text=True)
        db.session.expire_all()
        assert (motif.duration_minutes, motif.name, motif.discreet, motif.location_type) == (
            45, "Consultation nourrisson", True, LocationType.ON_SITE)

    # Another territory's entry is not adoptable, even by a hand-made request.
    assert adopt(client, world["north"], world["foreign"]).status_code == 404


def test_a_change_to_an_entry_is_previewed_then_reaches_the_motifs_but_their_adjustments(client, world, db):
    entry = MotifCatalogueEntry(territory_id=world["territory"].id, name="Consultation nourrisson",
                                duration_minutes=30, cancellation_limit_hours=4,
                                adjustable=["duration_minutes", "color", "reminder_offsets"])
    db.session.add(entry)
    db.session.commit()
    login(client, world["north_admin"])
    adopt(client, world["north"], entry)
    login(client, world["south_admin"])
    adopt(client, world["south"], entry)
    north, south = (db.session.scalar(select(Motif).where(Motif.organisation_id == world[key].id))
                    for key in ("north", "south"))
    north.duration_minutes = 40  # Lille adjusted its duration; Roubaix kept the territory's
    db.session.commit()

    login(client, world["chief"])
    url = f"/admin/catalogue/{entry.id}/modifier"
    page = client.get(url).get_data(as_text=True)
    change = posted(page, name="Consultation du nourrisson", duration_minutes="45", cancellation_limit_hours="24",
                    adjustable=["duration_minutes", "color", "reminder_offsets", "cancellation_limit_hours"])
    preview = client.post(url, data=change)
    text = preview.get_data(as_text=True)
    assert preview.status_code == 200 and "Ce qui changera en enregistrant" in text
    assert "2 motif(s) adopté(s) par les organisations changeront" in text
    assert "Durée (minutes) : 30 → 45" in text  # Roubaix
    assert "Durée (minutes) : 40" in text  # Lille keeps its adjustment, and is told so
    assert "Nom : Consultation nourrisson → Consultation du nourrisson" in text
    db.session.expire_all()
    assert (entry.name, south.duration_minutes, north.name) == ("Consultation nourrisson", 30,
                                                                 "Consultation nourrisson")

    confirmed = client.post(url, data=posted(text, 1))  # the preview's own form, with its confirmation
    assert confirmed.status_code == 302
    assert "2 motif(s) adopté(s)" in client.get(confirmed.location).get_data(as_text=True)
    db.session.expire_all()
    assert (entry.name, entry.duration_minutes, entry.cancellation_limit_hours) == (
        "Consultation du nourrisson", 45, 24)
    assert (north.name, north.duration_minutes, north.cancellation_limit_hours) == ("Consultation du nourrisson", 40, 24)
    assert (south.name, south.duration_minutes, south.cancellation_limit_hours) == ("Consultation du nourrisson", 45, 24)

    # A preview gone stale (a motif adjusted meanwhile) is shown again rather than saved blind.
    page = client.get(url).get_data(as_text=True)
    stale = client.post(url, data=posted(page, duration_minutes="60"))
    south.duration_minutes = 50
    db.session.commit()
    again = client.post(url, data=posted(stale.get_data(as_text=True), 1))
    assert again.status_code == 200 and "Ce qui changera en enregistrant" in again.get_data(as_text=True)
    db.session.expire_all()
    assert entry.duration_minutes == 45


def test_a_renamed_entry_that_would_clash_with_an_organisations_own_motif_stores_nothing(client, world, db,
                                                                                        factories):
    entry = MotifCatalogueEntry(territory_id=world["territory"].id, name="Consultation nourrisson", adjustable=[])
    db.session.add(entry)
    db.session.commit()
    login(client, world["north_admin"])
    adopt(client, world["north"], entry)
    factories.MotifFactory(organisation=world["north"], name="Pesée")
    login(client, world["chief"])
    url = f"/admin/catalogue/{entry.id}/modifier"
    preview = client.post(url, data=posted(client.get(url).get_data(as_text=True), name="Pesée", color="#ff0000"))
    refused = client.post(url, data=posted(preview.get_data(as_text=True), 1))
    assert refused.status_code == 422
    assert "a déjà un autre motif nommé « Pesée »" in refused.get_data(as_text=True)
    db.session.expire_all()
    assert entry.name == "Consultation nourrisson" and entry.color == "#000091"
    assert {motif.name for motif in entry.motifs} == {"Consultation nourrisson"}


def test_an_existing_motif_is_linked_after_comparing_it_and_never_to_another_territorys_entry(client, world, db,
                                                                                              factories):
    entry = MotifCatalogueEntry(territory_id=world["territory"].id, name="Entretien prénatal", duration_minutes=60,
                                discreet=True, adjustable=["duration_minutes"])
    db.session.add(entry)
    db.session.commit()
    motif = factories.MotifFactory(organisation=world["north"], name="EPP", duration_minutes=45, discreet=False)
    login(client, world["north_admin"])
    assert "Relier ce motif au catalogue" in client.get(f"/admin/motifs/{motif.id}/modifier").get_data(as_text=True)

    url = f"/admin/motifs/{motif.id}/catalogue"
    compared = client.get(url, query_string={"entry": entry.id}).get_data(as_text=True)
    assert "« EPP » comparé à « Entretien prénatal » du catalogue" in compared
    assert "Gardé : ajustable par l'organisation" in html.unescape(compared)  # the duration
    assert "Prend la valeur du catalogue" in compared  # the name, discretion

    # An entry of another territory posted by hand: a French message, nothing linked or changed.
    foreign = client.post(url, data=posted(compared, entry=str(world["foreign"].id)))
    assert foreign.status_code == 422
    assert "Choisissez un motif du catalogue de votre territoire" in foreign.get_data(as_text=True)
    db.session.expire_all()
    assert (motif.catalogue_id, motif.name, motif.discreet) == (None, "EPP", False)

    linked = client.post(url, data=posted(compared))
    assert linked.status_code == 302
    db.session.expire_all()
    assert (motif.catalogue_id, motif.name, motif.discreet, motif.duration_minutes) == (
        entry.id, "Entretien prénatal", True, 45)

    # Unlinked, it keeps its values and the catalogue's changes no longer reach it.
    page = client.get(f"/admin/motifs/{motif.id}/modifier").get_data(as_text=True)
    assert client.post(f"/admin/motifs/{motif.id}/catalogue/detacher",
                       data={"csrf_token": csrf_token_from(page)}).status_code == 302
    db.session.expire_all()
    assert (motif.catalogue_id, motif.name) == (None, "Entretien prénatal")


def test_the_statistics_compare_one_catalogue_motif_across_organisations(client, world, db, factories):
    entry = MotifCatalogueEntry(territory_id=world["territory"].id, name="Consultation nourrisson")
    db.session.add(entry)
    db.session.commit()
    motifs = {}
    for key in ("north", "south"):
        motifs[key] = Motif(organisation_id=world[key].id, catalogue_entry=entry, **entry.values())
        db.session.add(motifs[key])
    own = factories.MotifFactory(organisation=world["south"], name="Motif propre")
    db.session.commit()
    agent = factories.AgentFactory(organisation=world["north"], organisation__role=Role.AGENT)
    start = NOW - timedelta(days=10)
    statuses = {"north": [RdvStatus.SEEN, RdvStatus.SEEN, RdvStatus.SEEN, RdvStatus.NOSHOW],
                "south": [RdvStatus.NOSHOW, RdvStatus.SEEN]}
    for key, marks in statuses.items():
        for index, status in enumerate(marks):
            at = start + timedelta(hours=index)
            factories.RdvFactory(motif=motifs[key], agents=[agent], starts_at=at, ends_at=at + timedelta(minutes=30),
                                 status=status)
    factories.RdvFactory(motif=own, agents=[agent], starts_at=start, ends_at=start + timedelta(minutes=30),
                         status=RdvStatus.NOSHOW)

    login(client, world["chief"])
    page = client.get(f"/statistiques/territoire/{world['territory'].id}").get_data(as_text=True)
    table = page[page.index('id="tableau-catalogue"'):]
    table = table[:table.index("</table>")]
    assert "PMI Lille</td><td>4</td><td>3</td>" in table and "25,0" in table.replace(".", ",")
    assert "PMI Roubaix</td><td>2</td><td>1</td>" in table and "50,0" in table.replace(".", ",")
    assert "Motif propre" not in table

    file = client.get(f"/statistiques/territoire/{world['territory'].id}/catalogue.csv")
    assert file.status_code == 200
    rows = list(csv.reader(io.StringIO(file.get_data(as_text=True).lstrip("\ufeff")), delimiter=";"))
    assert rows[0][:3] == ["Motif du catalogue", "Organisation", "RDV"]
    assert ["Consultation nourrisson", "PMI Lille", "4", "3", "1", "25,0"] in rows
    assert ["Consultation nourrisson", "PMI Roubaix", "2", "1", "1", "50,0"] in rows

    # The list of rdvs exported in the background names each rdv's catalogue motif.
    scope = Scope(world["territory"].id, "Europe/Paris", (world["north"].id, world["south"].id), True)
    listed = [row for batch in rdv_batches(scope, default_filters(NOW.date())) for row in batch]
    assert RDV_HEADERS[-1] == "Motif du catalogue du territoire"
    assert sorted(row[-1] for row in listed) == [""] + ["Consultation nourrisson"] * 6

    # An organisation's own page compares nothing it may not see: its own row only.
    login(client, world["south_admin"])
    page = client.get(f"/statistiques/organisation/{world['south'].id}").get_data(as_text=True)
    assert "PMI Roubaix</td><td>2</td>" in page and "PMI Lille</td>" not in page


def test_the_api_shows_a_motifs_catalogue_entry(client, world, db, factories):
    from lapins.auth.tokens import create

    entry = MotifCatalogueEntry(territory_id=world["territory"].id, name="Consultation nourrisson")
    db.session.add(entry)
    db.session.commit()
    adopted = Motif(organisation_id=world["north"].id, catalogue_entry=entry, **entry.values())
    db.session.add(adopted)
    db.session.commit()
    own = factories.MotifFactory(organisation=world["north"], name="Motif propre")
    token = create(world["north_admin"], "Test catalogue")[1]
    listed = client.get("/api/v1/motifs", headers={"Authorization": f"Bearer {token}"}).get_json()
    by_id = {motif["id"]: motif for motif in listed["items"]}
    assert by_id[adopted.id]["catalogue_id"] == entry.id and by_id[own.id]["catalogue_id"] is None


def test_two_adoptions_at_once_leave_one_motif_and_a_french_message(world, db):
    """The check before adopting cannot see an adoption committing at the same moment: the unique index does, and
    the second one gets the same French refusal as if it had come later."""
    from lapins.admin import catalogue
    from lapins.admin.services import AdminError

    entry = MotifCatalogueEntry(territory_id=world["territory"].id, name="Consultation nourrisson")
    db.session.add(entry)
    db.session.commit()
    catalogue.adopt(world["north"], entry)
    db.session.add(Motif(organisation_id=world["north"].id, catalogue_id=entry.id, name="Doublon"))
    with pytest.raises(AdminError, match="Cette organisation a déjà adopté ce motif"):
        catalogue._commit("Cette organisation a déjà adopté ce motif.")
    assert db.session.scalar(select(func.count()).select_from(Motif)
                             .where(Motif.catalogue_id == entry.id)) == 1
    # Two organisations' own motifs (no entry) are no duplicates.
    db.session.add_all([Motif(organisation_id=world["north"].id, name="A"),
                        Motif(organisation_id=world["north"].id, name="B")])
    db.session.commit()
