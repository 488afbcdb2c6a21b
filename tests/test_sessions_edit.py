"""A session moved or edited from its agenda page (`/seances/<id>/modifier`): through booking's one move path, its
agents' agendas checked, each family still registered told once (one SMS segment, its own link) of the new time or
place, its reminders planned again and the old ones dropped, an audit row; a replayed form, a busy agent or a
cancelled session refused with nothing changed; the places still open to the waiting list follow the session."""
from __future__ import annotations

import html
from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import select

from lapins.booking import book_rdv, cancel_rdv
from lapins.booking import sessions
from lapins.infra.extensions import db
from lapins.models import (
    AuditEvent, Message, MessageKind, MessageStatus, Rdv, RdvStatus, SlotOffer, WaitlistSlot,
)
from lapins.notifications import gsm, links, outbox
from lapins.waitlist import entries as waitlist_entries
from tests.conftest import csrf_token_from
from tests.test_sessions import NOW, PARIS, factories_motif, new_session, pmi, tuesday  # noqa: F401  (pmi: fixture)


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


def messages(participation_id: int, kind: MessageKind) -> list[Message]:
    db.session.expire_all()
    return list(db.session.scalars(select(Message).where(Message.participation_id == participation_id,
                                                         Message.kind == kind).order_by(Message.due_at)))


def edit(client, session: Rdv, **fields):
    """The page's form as drawn, with `fields` changed by the agent."""
    page = client.get(f"/seances/{session.id}/modifier").get_data(as_text=True)
    data = {"csrf_token": csrf_token_from(page), "lieu_id": session.lieu_id, "agent_ids": [a.id for a in session.agents],
            "title": session.title or "", "day": session.starts_at.astimezone(PARIS).date().isoformat(),
            "start_time": session.starts_at.astimezone(PARIS).strftime("%H:%M"),
            "duration": int((session.ends_at - session.starts_at).total_seconds() // 60),
            "notes": session.notes or "", "revision": session.revision} | fields
    return client.post(f"/seances/{session.id}/modifier", data=data)


def test_a_session_moved_from_its_page_tells_each_family_once_with_new_reminders(app, client, auth, pmi, factories):
    session = new_session(pmi, starts=[tuesday(1)])
    kept = sessions.add_participant(actor=pmi.agent, session=session, usagers=list(pmi.families[0])).id
    gone = sessions.add_participant(actor=pmi.agent, session=session, usagers=list(pmi.families[1]))
    sessions.cancel_participation(actor=pmi.agent, participation=gone)
    other_lieu = factories.LieuFactory(organisation=pmi.organisation, name="Maison des familles")
    auth.login(pmi.agent)
    page = html.unescape(client.get(f"/seances/{session.id}").get_data(as_text=True))
    assert "Déplacer ou modifier la séance" in page
    form = html.unescape(client.get(f"/seances/{session.id}/modifier").get_data(as_text=True))
    assert 'value="10:00"' in form and 'value="Massage bébé"' in form and 'value="90"' in form

    response = edit(client, session, start_time="14:00", lieu_id=other_lieu.id, duration=120)
    assert response.status_code == 302, html.unescape(response.get_data(as_text=True))
    shown = html.unescape(client.get(response.headers["Location"]).get_data(as_text=True))
    assert "1 famille(s) prévenue(s)" in shown and "Maison des familles" in shown
    db.session.expire_all()
    moved = db.session.get(Rdv, session.id)
    assert (moved.starts_at, moved.ends_at, moved.lieu_id) == (tuesday(1, hour=14), tuesday(1, hour=16),
                                                               other_lieu.id)
    [changed] = messages(kept, MessageKind.CHANGED)
    with app.test_request_context():
        text = outbox.compose_sms(changed)
    assert "mar. 10/03 à 14h" in text and "Maison des familles" in text, text
    assert links.place_token(kept) in text and gsm.segments(text) == 1, text
    assert messages(gone.id, MessageKind.CHANGED) == []
    reminders = messages(kept, MessageKind.REMINDER)
    assert {m.status for m in reminders if m.expires_at == tuesday(1)} == {MessageStatus.SKIPPED}
    assert len([m for m in reminders
                if m.expires_at == tuesday(1, hour=14) and m.status == MessageStatus.PENDING]) == 2
    # The audit trail says it moved, by whom, from the agenda.
    row = db.session.scalar(select(AuditEvent).where(AuditEvent.object_type == "rdv", AuditEvent.object_id == session.id,
                                                     AuditEvent.action == "moved"))
    assert row is not None and row.agent_id == pmi.agent.id and row.via == "agenda"
    assert {change["field"] for change in row.changes} >= {"starts_at", "lieu_id"}


def test_a_new_title_or_description_alone_tells_no_family(client, auth, pmi):
    session = new_session(pmi, starts=[tuesday(1)])
    place = sessions.add_participant(actor=pmi.agent, session=session, usagers=list(pmi.families[0])).id
    auth.login(pmi.agent)
    response = edit(client, session, title="Massage et portage", notes="Salle du fond")
    assert response.status_code == 302
    db.session.expire_all()
    changed = db.session.get(Rdv, session.id)
    assert (changed.title, changed.notes, changed.starts_at) == ("Massage et portage", "Salle du fond", tuesday(1))
    assert messages(place, MessageKind.CHANGED) == []
    assert "prévenue" not in html.unescape(client.get(f"/seances/{session.id}").get_data(as_text=True))


def test_a_busy_agent_a_replayed_form_or_a_cancelled_session_change_nothing(client, auth, pmi):
    session = new_session(pmi, starts=[tuesday(1)])
    place = sessions.add_participant(actor=pmi.agent, session=session, usagers=list(pmi.families[0])).id
    book_rdv(actor=pmi.agent, motif=factories_motif(pmi), agents=[pmi.agent], usagers=[pmi.families[2][0]],
             lieu=pmi.lieu, starts_at=tuesday(1, hour=15), force=True)
    auth.login(pmi.agent)
    busy = edit(client, session, start_time="14:00")
    assert busy.status_code == 422
    assert "Claire Hoarau a déjà un rendez-vous de 15h00" in html.unescape(busy.get_data(as_text=True))

    stale = edit(client, session, start_time="08:00", revision=session.revision - 1)
    assert stale.status_code == 422 and "a changé entre-temps" in html.unescape(stale.get_data(as_text=True))

    page = client.get(f"/seances/{session.id}/modifier").get_data(as_text=True)
    cancel_rdv(actor=pmi.agent, rdv=session, status=RdvStatus.REVOKED, reason="Grève")
    assert client.get(f"/seances/{session.id}/modifier").status_code == 302  # its page says why
    cancelled = client.post(f"/seances/{session.id}/modifier", data={
        "csrf_token": csrf_token_from(page), "lieu_id": pmi.lieu.id, "agent_ids": [pmi.agent.id], "title": "x",
        "day": tuesday(1).astimezone(PARIS).date().isoformat(), "start_time": "08:00", "duration": 90,
        "revision": session.revision})
    assert cancelled.status_code == 422 and "Cette séance est annulée" in html.unescape(cancelled.get_data(as_text=True))
    db.session.expire_all()
    assert db.session.get(Rdv, session.id).starts_at == tuesday(1)
    assert messages(place, MessageKind.CHANGED) == []


def test_a_session_is_moved_outside_opening_hours_but_never_into_the_past(client, auth, pmi):
    session = new_session(pmi, starts=[tuesday(1)])
    auth.login(pmi.agent)  # the agent has no opening hours at all: a session is planned on its own
    assert edit(client, session, start_time="19:00").status_code == 302
    past = edit(client, db.session.get(Rdv, session.id), day=(NOW - timedelta(days=1)).date().isoformat())
    assert past.status_code == 422 and "date à venir" in html.unescape(past.get_data(as_text=True))


def offered_place(app, pmi) -> Rdv:
    """A full session next Tuesday whose one place, given back, is offered to the family waiting for it."""
    session = new_session(pmi, capacity=1, starts=[tuesday(1)])
    place = sessions.add_participant(actor=pmi.agent, session=session, usagers=list(pmi.families[0]))
    waitlist_entries.add_for_session(pmi.agent, pmi.families[1][0], session)
    with app.test_request_context():
        sessions.cancel_participation(actor=pmi.agent, participation=place)
    return session


def test_the_places_open_to_the_waiting_list_follow_the_moved_session(app, pmi):
    session = offered_place(app, pmi)
    db.session.expire_all()
    [slot] = db.session.scalars(select(WaitlistSlot).where(WaitlistSlot.session_id == session.id)).all()
    [offer] = db.session.scalars(select(SlotOffer)).all()
    assert (slot.status.value, slot.starts_at, offer.status.value) == ("open", tuesday(1), "held")
    sessions.move_session(actor=pmi.agent, session=db.session.get(Rdv, session.id), starts_at=tuesday(2, hour=9),
                          duration=timedelta(minutes=60))
    db.session.expire_all()
    slot = db.session.get(WaitlistSlot, slot.id)
    assert (slot.starts_at, slot.ends_at) == (tuesday(2, hour=9), tuesday(2, hour=10))
    # No slot for an individual rdv is left at the session's old time.
    assert db.session.scalars(select(WaitlistSlot).where(WaitlistSlot.session_id.is_(None))).all() == []


def test_a_family_already_offered_a_place_is_sent_the_offer_again_with_the_moved_session_s_time(app, pmi):
    session = offered_place(app, pmi)
    outbox.dispatch_due()
    db.session.expire_all()
    [offer] = db.session.scalars(select(SlotOffer)).all()

    def offer_texts() -> list[str]:
        db.session.expire_all()
        return [message.body for message in db.session.scalars(
            select(Message).where(Message.offer_id == offer.id, Message.channel == "sms").order_by(Message.id))]

    [first] = offer_texts()
    assert "mar. 10/03 à 10h" in first
    sessions.move_session(actor=pmi.agent, session=db.session.get(Rdv, session.id), starts_at=tuesday(2, hour=9),
                          duration=timedelta(minutes=60))
    outbox.dispatch_due()
    texts = offer_texts()
    assert len(texts) == 2 and texts[0] == first
    assert "mar. 17/03 à 9h" in texts[1] and "10/03" not in texts[1]
    assert texts[1].split()[-1] == first.split()[-1]  # the same link: the same held place
    assert gsm.segments(texts[1]) <= 2


def test_a_session_dragged_in_the_grid_tells_its_families_and_never_lands_in_the_past(client, auth, pmi):
    session = new_session(pmi, starts=[tuesday(1)])
    place = sessions.add_participant(actor=pmi.agent, session=session, usagers=list(pmi.families[0])).id
    auth.login(pmi.agent)
    token = csrf_token_from(client.get(f"/agenda/agents/{pmi.agent.id}").get_data(as_text=True))
    moved = client.post(f"/agenda/api/rdvs/{session.id}/deplacer", json={"starts_at": "2026-03-11T09:00:00"},
                        headers={"X-CSRFToken": token})
    assert moved.status_code == 200, moved.json
    db.session.expire_all()
    dragged = db.session.get(Rdv, session.id)
    assert (dragged.starts_at, dragged.ends_at - dragged.starts_at) == (tuesday(1, hour=9) + timedelta(days=1),
                                                                        timedelta(minutes=90))
    assert len(messages(place, MessageKind.CHANGED)) == 1
    past = client.post(f"/agenda/api/rdvs/{session.id}/deplacer", json={"starts_at": "2026-03-01T09:00:00",
                                                                        "force": True},
                       headers={"X-CSRFToken": token})
    assert past.status_code == 409 and "date à venir" in past.json["error"]
    assert len(messages(place, MessageKind.CHANGED)) == 1
