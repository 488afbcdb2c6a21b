"""lapins.policies decided exactly: for each role and each action, who may and who may not, and what each list
shows, in one world of two territories (the first with a territory administrator, the second with only a
deactivated one, so administered by its organisations' administrators).

Written against the surviving mutants of `make mutate`'s policies room (docs/testing.md): every rule is pinned
from both sides (someone allowed, someone refused), so a condition turned, an action misspelt or a filter dropped
changes an answer here. Permission code has no accepted survivor.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from werkzeug.exceptions import HTTPException

from lapins import policies
from lapins.models import AgentRole, Role, Sector, Webhook
from lapins.models.api_tokens import ApiToken
from lapins.models.exports import Export, ExportKind
from lapins.models.motifs import MotifCatalogueEntry
from lapins.models.rdvs import Participation
from lapins.models.territory_admins import TerritoryAdmin


@pytest.fixture
def world(db, factories):
    """Territory one: organisations A and B, a territory administrator (`ta`, working in territory two) and
    one who also works in A (`ta_in_a`). Territory two: organisations C and D, whose only territory administrator
    is deactivated, so `admin_c` (administrator of C and D) and `admin_d` administer it."""
    w = SimpleNamespace()
    # Catalogue entries first, so that no entry has its territory's id (an entry read as a territory shows).
    w.t1, w.t2 = factories.TerritoryFactory(), factories.TerritoryFactory()
    w.entry_t2 = MotifCatalogueEntry(territory_id=w.t2.id, name="Bilan de quatre ans")
    w.entry_t1 = MotifCatalogueEntry(territory_id=w.t1.id, name="Consultation nourrisson")
    db.session.add_all([w.entry_t2, w.entry_t1])
    w.org_a = factories.OrganisationFactory(territory=w.t1, name="PMI Arras")
    w.org_b = factories.OrganisationFactory(territory=w.t1, name="PMI Béthune")
    w.org_c = factories.OrganisationFactory(territory=w.t2, name="PMI Calais")
    w.org_d = factories.OrganisationFactory(territory=w.t2, name="PMI Douai")

    def agent(last_name, first_name, *roles, **fields):
        person = factories.AgentFactory(last_name=last_name, first_name=first_name, **fields)
        person.roles.extend(AgentRole(organisation=organisation, role=role) for organisation, role in roles)
        db.session.commit()
        return person

    w.admin_a = agent("Bernard", "Zoé", (w.org_a, Role.ADMIN))
    w.agent_a = agent("Bernard", "Anne", (w.org_a, Role.AGENT))
    w.secretary_a = agent("Aubert", "Marc", (w.org_a, Role.SECRETARY))
    w.gone_a = agent("Abadie", "Luc", (w.org_a, Role.AGENT), active=False)
    w.agent_b = agent("Colin", "Paul", (w.org_b, Role.AGENT))
    w.two_orgs = agent("Dumas", "Léa", (w.org_a, Role.AGENT), (w.org_b, Role.ADMIN))
    w.ta = agent("Roux", "Inès", (w.org_c, Role.AGENT))
    w.ta_in_a = agent("Petit", "Jean", (w.org_a, Role.AGENT))
    w.admin_c = agent("Faure", "Rose", (w.org_c, Role.ADMIN), (w.org_d, Role.ADMIN))
    w.admin_d = agent("Garnier", "Hugo", (w.org_d, Role.ADMIN))
    w.agent_c = agent("Henry", "Noé", (w.org_c, Role.AGENT))
    w.gone_admin_c = agent("Morel", "Eva", (w.org_c, Role.ADMIN), active=False)
    w.gone_ta_t2 = agent("Lucas", "Tom", (w.org_c, Role.AGENT), active=False)
    db.session.add_all([TerritoryAdmin(agent_id=w.ta.id, territory_id=w.t1.id),
                        TerritoryAdmin(agent_id=w.ta_in_a.id, territory_id=w.t1.id),
                        TerritoryAdmin(agent_id=w.gone_ta_t2.id, territory_id=w.t2.id)])

    w.motif_a = factories.MotifFactory(organisation=w.org_a, name="Vaccination")
    factories.MotifFactory(organisation=w.org_a, name="Pesée")
    factories.MotifFactory(organisation=w.org_b, name="Allaitement")
    w.lieu_a = factories.LieuFactory(organisation=w.org_a, name="Centre Ronville")
    factories.LieuFactory(organisation=w.org_a, name="Centre Achicourt")
    factories.LieuFactory(organisation=w.org_b, name="Centre Beuvry")
    # Plages and absences made before the rdvs so that no plage has its agent's id by chance.
    w.plage_of_two_orgs = factories.PlageFactory(agent=w.two_orgs, lieu=w.lieu_a)
    w.plage_a = factories.PlageFactory(agent=w.agent_a, lieu=w.lieu_a)
    factories.PlageFactory(agent=w.agent_b, lieu=factories.LieuFactory(organisation=w.org_b))
    w.absence_a = factories.AbsenceFactory(agent=w.agent_a)
    factories.AbsenceFactory(agent=w.agent_b)
    w.rdv_a = factories.RdvFactory(motif=w.motif_a)
    w.session_a = factories.RdvFactory(motif=w.motif_a, max_participants=8)
    w.rdv_b = factories.RdvFactory(motif=factories.MotifFactory(organisation=w.org_b))
    w.usager_a = factories.UsagerFactory(territory=w.t1, last_name="Durand", organisations=[w.org_a])
    w.usager_ab = factories.UsagerFactory(territory=w.t1, last_name="Leroy", organisations=[w.org_a, w.org_b])
    w.usager_b = factories.UsagerFactory(territory=w.t1, last_name="Vidal", organisations=[w.org_b])
    w.merged = factories.UsagerFactory(territory=w.t1, last_name="Durant", organisations=[w.org_a],
                                       merged_into_id=w.usager_a.id)
    w.webhook_a = Webhook(organisation_id=w.org_a.id, url="https://si.pas-de-calais.fr/rdv", secret_encrypted="x")
    w.sector_t1 = Sector(territory_id=w.t1.id, name="Arras nord")
    w.sector_t2 = Sector(territory_id=w.t2.id, name="Calais sud")
    w.participation = Participation(rdv_id=w.session_a.id, usager_id=w.usager_a.id)
    w.export_a = Export(requested_by_id=w.agent_a.id, territory_id=w.t1.id, organisation_id=w.org_a.id,
                        kind=list(ExportKind)[0], file_format="csv")
    w.export_t1 = Export(requested_by_id=w.agent_b.id, territory_id=w.t1.id, organisation_id=None,
                         kind=list(ExportKind)[0], file_format="csv")
    db.session.add_all([w.webhook_a, w.sector_t1, w.sector_t2, w.participation, w.export_a, w.export_t1])
    db.session.add_all([ApiToken(agent_id=person.id, label="Logiciel", token_hash=f"{person.id:064d}",
                                 prefix=f"lp_{person.id}") for person in (w.agent_a, w.admin_a)])
    db.session.commit()
    db.session.expire_all()
    return w


ACTORS = ["admin_a", "agent_a", "secretary_a", "agent_b", "two_orgs", "ta", "ta_in_a", "admin_c", "admin_d",
          "agent_c"]


def allowed(world, action: str, target) -> set[str]:
    return {name for name in ACTORS if policies.can(getattr(world, name), action, target)}


def outcome(call) -> int:
    """200 when the call lets the request through, else the HTTP status it aborts with."""
    try:
        call()
    except HTTPException as error:
        return error.code
    return 200


MEMBERS_OF_A = {"admin_a", "agent_a", "secretary_a", "two_orgs", "ta_in_a"}


def test_in_an_organisation_each_action_is_for_exactly_the_roles_it_names(world):
    w = world
    for target in (w.rdv_a, w.usager_a, w.motif_a, w.lieu_a, w.plage_a, w.absence_a, w.webhook_a, w.participation,
                   w.org_a, w.agent_a):
        assert allowed(w, "view", target) == MEMBERS_OF_A, target
    for action in ("book", "edit", "release", "merge"):
        assert allowed(w, action, w.rdv_a) == MEMBERS_OF_A, action
        assert allowed(w, action, w.usager_a) == MEMBERS_OF_A, action
    assert allowed(w, "view", w.usager_ab) == MEMBERS_OF_A | {"agent_b"}
    assert allowed(w, "administer", w.webhook_a) == {"admin_a"}
    assert allowed(w, "erase", w.usager_a) == {"admin_a"}
    assert allowed(w, "audit", w.rdv_a) == {"admin_a"}
    # An agent's own schedule is theirs to manage; a colleague's is for the administrators and secretaries.
    assert allowed(w, "manage_schedule", w.plage_a) == {"admin_a", "secretary_a", "agent_a"}
    assert allowed(w, "manage_schedule", w.absence_a) == {"admin_a", "secretary_a", "agent_a"}
    assert allowed(w, "manage_schedule", w.agent_a) == {"admin_a", "secretary_a", "agent_a"}
    assert allowed(w, "manage_schedule", w.plage_of_two_orgs) == {"admin_a", "secretary_a", "two_orgs"}
    assert allowed(w, "manage_schedule", w.rdv_a) == {"admin_a", "secretary_a"}
    # Configuring: the organisation's administrators, and the territory's administrators, member or not.
    for target in (w.org_a, w.motif_a, w.lieu_a, w.agent_a):
        assert allowed(w, "configure", target) == {"admin_a", "ta", "ta_in_a"}, target
    assert allowed(w, "unlink_identity", w.agent_a) == {"admin_a", "ta", "ta_in_a"}
    assert allowed(w, "configure", w.agent_b) == {"two_orgs", "ta", "ta_in_a"}
    # A territory administrator reaches nothing else of an organisation it does not work in.
    for action, target in (("view", w.org_a), ("view", w.motif_a), ("book", w.rdv_a), ("administer", w.webhook_a)):
        assert "ta" not in allowed(w, action, target)


def test_a_merged_file_is_only_seen(world):
    w = world
    assert allowed(w, "view", w.merged) == MEMBERS_OF_A
    for action in ("edit", "book", "merge", "erase", "audit", "release"):
        assert allowed(w, action, w.merged) == set(), action


def test_a_territory_administrators_account_is_configured_by_that_territorys_administrators_only(world):
    w = world
    # admin_a administers organisation A, where `ta_in_a` works, but not territory one, which `ta_in_a` administers.
    assert allowed(w, "configure", w.ta_in_a) == {"ta", "ta_in_a"}
    # `ta` works in C, of territory two: C's administrator may not configure it, territory one's cannot reach it.
    assert allowed(w, "configure", w.ta) == set()
    assert policies.can(w.admin_c, "configure", w.agent_c) and policies.can(w.admin_c, "view", w.ta)


def test_territories_sectors_and_the_catalogue(world):
    w = world
    members_of_t1 = MEMBERS_OF_A | {"agent_b"}
    assert allowed(w, "view", w.t1) == members_of_t1 | {"ta"}
    for action in ("administer", "watch_delivery", "manage_catalogue"):
        assert allowed(w, action, w.t1) == {"ta", "ta_in_a"}, action
        # Territory two's only territory administrator is deactivated: its organisations' administrators stand in.
        assert allowed(w, action, w.t2) == {"admin_c", "admin_d"}, action
    assert allowed(w, "oversee", w.t1) == {"admin_a", "two_orgs", "ta", "ta_in_a"}
    assert allowed(w, "oversee", w.t2) == {"admin_c", "admin_d"}
    for action in ("view", "configure"):
        assert allowed(w, action, w.sector_t1) == {"ta", "ta_in_a"}, action
        assert allowed(w, action, w.sector_t2) == {"admin_c", "admin_d"}, action
    assert allowed(w, "view", w.entry_t1) == members_of_t1 | {"ta"}
    assert allowed(w, "view", w.entry_t2) == {"admin_c", "admin_d", "agent_c", "ta"}
    assert allowed(w, "configure", w.entry_t1) == {"ta", "ta_in_a"}
    assert allowed(w, "configure", w.entry_t2) == {"admin_c", "admin_d"}
    assert policies.has_territory_admin(w.t1.id) and not policies.has_territory_admin(w.t2.id)
    assert [a.id for a in policies.territory_administrators(w.t1)] == [w.ta.id, w.ta_in_a.id]
    assert [a.id for a in policies.territory_administrators(w.t2)] == [w.admin_c.id, w.admin_d.id]


def test_an_unknown_action_or_target_is_a_programming_error_named_as_such(world):
    w = world
    cases = [(w.rdv_a, "unknown action 'fly'"), (w.t1, "unknown action 'fly' on a territory"),
             (w.sector_t1, "unknown action 'fly' on a sector"),
             (w.entry_t1, "unknown action 'fly' on a catalogue entry")]
    for target, message in cases:
        with pytest.raises(ValueError) as error:
            policies.can(w.admin_a, "fly", target)
        assert str(error.value) == message
    with pytest.raises(TypeError) as error:
        policies.can(w.admin_a, "view", datetime.now(UTC))
    assert str(error.value) == "no policy for datetime"


def test_authorize_hides_what_is_out_of_reach_and_refuses_what_is_not_allowed(world):
    w = world
    assert outcome(lambda: policies.authorize(w.agent_a, "edit", w.rdv_a)) == 200
    assert outcome(lambda: policies.authorize(w.agent_a, "audit", w.rdv_a)) == 403
    assert outcome(lambda: policies.authorize(w.agent_b, "view", w.rdv_a)) == 404
    assert outcome(lambda: policies.authorize(w.agent_a, "view", None)) == 404
    assert outcome(lambda: policies.authorize(w.ta, "configure", w.org_a)) == 200
    assert outcome(lambda: policies.authorize(w.ta, "view", w.org_a)) == 403
    assert outcome(lambda: policies.authorize(w.ta, "view", w.rdv_a)) == 404
    # Statistics: an organisation's for everyone in it, a territory's for those who oversee it.
    assert outcome(lambda: policies.authorize_statistics(w.agent_a, w.org_a)) == 200
    assert outcome(lambda: policies.authorize_statistics(w.agent_b, w.org_a)) == 404
    assert outcome(lambda: policies.authorize_statistics(w.admin_a, w.t1)) == 200
    assert outcome(lambda: policies.authorize_statistics(w.agent_a, w.t1)) == 403
    # Adopting a catalogue entry: one's own territory's, into an organisation one configures.
    assert outcome(lambda: policies.authorize_adoption(w.admin_a, w.org_a, w.entry_t1)) == 200
    assert outcome(lambda: policies.authorize_adoption(w.ta, w.org_a, w.entry_t1)) == 200
    assert outcome(lambda: policies.authorize_adoption(w.admin_a, w.org_a, w.entry_t2)) == 404
    assert outcome(lambda: policies.authorize_adoption(w.admin_a, w.org_a, None)) == 404
    assert outcome(lambda: policies.authorize_adoption(w.agent_a, w.org_a, w.entry_t1)) == 403
    assert outcome(lambda: policies.authorize_adoption(w.admin_c, w.org_a, w.entry_t1)) == 404
    assert outcome(lambda: policies.authorize_adoption(w.admin_a, None, w.entry_t1)) == 404


def test_an_export_is_for_who_asked_for_it_and_the_administrators_of_its_scope(world):
    w = world
    assert outcome(lambda: policies.authorize_export(w.agent_a, None)) == 404
    assert {name: outcome(lambda: policies.authorize_export(getattr(w, name), w.export_a)) for name in ACTORS} == {
        "admin_a": 200, "agent_a": 200, "secretary_a": 403, "agent_b": 404, "two_orgs": 403, "ta": 404,
        "ta_in_a": 403, "admin_c": 404, "admin_d": 404, "agent_c": 404}
    # A territory's export: its scope is every organisation of the territory.
    assert {name: outcome(lambda: policies.authorize_export(getattr(w, name), w.export_t1)) for name in ACTORS} == {
        "admin_a": 200, "agent_a": 403, "secretary_a": 403, "agent_b": 200, "two_orgs": 200, "ta": 404,
        "ta_in_a": 403, "admin_c": 404, "admin_d": 404, "agent_c": 404}


def test_who_is_an_administrator_and_what_they_are_offered(world, db):
    w = world
    administrators = {name for name in ACTORS if policies.is_administrator(getattr(w, name))}
    assert administrators == {"admin_a", "two_orgs", "ta", "ta_in_a", "admin_c", "admin_d"}
    assert {name for name in ACTORS if policies.may_issue_api_tokens(getattr(w, name))} == administrators
    assert {name for name in ACTORS if policies.may_use_second_factor(getattr(w, name))} == administrators
    w.agent_a.totp_enabled_at = datetime.now(UTC) - timedelta(days=1)  # one who has it keeps it
    assert policies.may_use_second_factor(w.agent_a) and not policies.may_issue_api_tokens(w.agent_a)
    assert policies.configured_organisation_ids(w.ta, w.t1) == {w.org_a.id, w.org_b.id}
    assert policies.configured_organisation_ids(w.admin_a, w.t1) == {w.org_a.id}
    assert policies.configured_organisation_ids(w.two_orgs, w.t1) == {w.org_b.id}
    assert policies.configured_organisation_ids(w.agent_a, w.t1) == set()
    assert policies.configured_organisation_ids(w.admin_c, w.t1) == set()
    assert policies.configured_organisation_ids(w.admin_c, w.t2) == {w.org_c.id, w.org_d.id}


def test_each_list_holds_the_actors_organisations_rows_only_in_order(world, db):
    w = world

    def rows(scope):
        return db.session.scalars(scope).all()

    assert [t.prefix for t in rows(policies.api_token_scope(w.agent_a))] == [f"lp_{w.agent_a.id}"]
    assert {r.id for r in rows(policies.rdv_scope(w.agent_a))} == {w.rdv_a.id, w.session_a.id}
    assert {r.id for r in rows(policies.rdv_scope(w.agent_b))} == {w.rdv_b.id}
    assert [r.id for r in rows(policies.session_scope(w.agent_a))] == [w.session_a.id]
    assert [(a.last_name, a.first_name) for a in rows(policies.agent_scope(w.agent_a))] == [
        ("Aubert", "Marc"), ("Bernard", "Anne"), ("Bernard", "Zoé"), ("Dumas", "Léa"), ("Petit", "Jean")]
    assert [m.name for m in rows(policies.motif_scope(w.agent_a))] == ["Pesée", "Vaccination"]
    assert [lieu.name for lieu in rows(policies.lieu_scope(w.agent_a))] == ["Centre Achicourt", "Centre Ronville"]
    assert sorted(u.last_name for u in rows(policies.usager_scope(w.agent_a))) == ["Durand", "Leroy"]
    assert sorted(u.last_name for u in rows(policies.usager_scope(w.agent_b))) == ["Leroy", "Vidal"]
    assert {p.agent_id for p in rows(policies.plage_scope(w.agent_a))} == {w.agent_a.id, w.two_orgs.id}
    assert [a.agent_id for a in rows(policies.absence_scope(w.agent_a))] == [w.agent_a.id]
    assert [a.agent_id for a in rows(policies.absence_scope(w.agent_b))] == [w.agent_b.id]
