"""Retention: rdvs ended more than 2 years ago go with what hangs off them; messages older than 6 months lose their
text and address but still count in the statistics. Daily beat job and `flask retention run [--dry-run]`."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import func, select, update

from lapins.models import (
    Channel, EntryStatus, Message, MessageKind, MessageStatus, OfferStatus, Rdv, RdvAgent, RdvStatus, Role, SlotOffer,
    SmsReplyRound, WaitlistEntry, WaitlistSlot,
)
from lapins.models.rdvs import RdvLinkCheck, rdv_usagers
from lapins.privacy import retention
from lapins.tasks import PERIODIC_JOBS, beat_schedule
from tests.test_stats import table_row

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 11, 15, 9, 0, tzinfo=timezone.utc)
PHONE = "+33698765432"


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def local(*args) -> datetime:
    return datetime(*args, tzinfo=PARIS).astimezone(timezone.utc)


def count(db, model_or_table) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(model_or_table))


@pytest.fixture()
def archive(factories, db):
    """Three years of one organisation: an rdv of October 2024 with everything that hangs off it, an rdv of March
    2026 whose SMS are 8 months old, an rdv of October 2026 whose SMS are recent."""
    organisation = factories.OrganisationFactory(territory__timezone="Europe/Paris", name="PMI Lille Sud")
    territory = organisation.territory
    motif = factories.MotifFactory(organisation=organisation, name="Pesée du nourrisson")
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    mother = factories.UsagerFactory(territory=territory, organisations=[organisation], first_name="Zélie",
                                     last_name="Quennehen", phone=PHONE, email="zelie@example.fr")
    other_family = factories.UsagerFactory(territory=territory, organisations=[organisation])

    def rdv(starts_at, **kwargs):
        made = factories.RdvFactory(motif=motif, starts_at=starts_at, ends_at=starts_at + timedelta(minutes=30),
                                    agents=[agent], status=kwargs.pop("status", RdvStatus.SEEN),
                                    created_at=starts_at - timedelta(days=10), **kwargs)
        made.usagers.append(mother)
        db.session.commit()
        return made

    def sms(rdv_, sent_at, segments=1, **kwargs):
        message = Message(territory_id=territory.id, rdv_id=rdv_.id if rdv_ else None, usager_id=mother.id,
                          channel=kwargs.pop("channel", Channel.SMS), kind=kwargs.pop("kind", MessageKind.REMINDER),
                          status=kwargs.pop("status", MessageStatus.DELIVERED), segments=segments, due_at=sent_at,
                          sent_at=sent_at, to_address=PHONE, body="Rappel : RDV de Zélie Quennehen demain à 9h30.",
                          created_at=sent_at, **kwargs)
        db.session.add(message)
        db.session.commit()
        return message

    old = rdv(local(2024, 10, 7, 9, 30), status=RdvStatus.EXCUSED, cancelled_at=local(2024, 10, 6, 9))
    old_sms = [sms(old, local(2024, 10, 5, 9, 30), segments=2), sms(old, local(2024, 10, 6, 10))]
    db.session.add(RdvLinkCheck(rdv_id=old.id, failures=2))
    # Its cancellation freed the slot, offered to another family on the waiting list, who took it.
    entry = factories.WaitlistEntryFactory(organisation=organisation, motif=motif, usager=other_family,
                                           status=EntryStatus.FULFILLED, created_at=local(2024, 9, 1, 10),
                                           closed_at=local(2024, 10, 6, 9, 20))
    slot = WaitlistSlot(organisation_id=organisation.id, motif_id=motif.id, agent_id=agent.id,
                        starts_at=old.starts_at, ends_at=old.ends_at, source_rdv_id=old.id, created_at=old.cancelled_at)
    db.session.add(slot)
    db.session.commit()
    offer = SlotOffer(slot_id=slot.id, entry_id=entry.id, usager_id=other_family.id, status=OfferStatus.ACCEPTED,
                      offered_at=local(2024, 10, 6, 9, 5), held_until=local(2024, 10, 6, 9, 35))
    db.session.add(offer)
    db.session.commit()
    offer_sms = sms(None, local(2024, 10, 6, 9, 5), kind=MessageKind.OFFER, offer_id=offer.id)
    still_waiting = factories.WaitlistEntryFactory(organisation=organisation, motif=motif, usager=mother,
                                                   created_at=local(2024, 1, 10, 10))  # active: kept

    march = rdv(local(2026, 3, 10, 9, 30))
    march_sms = [sms(march, local(2026, 3, 8, 9, 30), segments=2), sms(march, local(2026, 3, 9, 9, 30)),
                 sms(march, local(2026, 3, 9, 9, 31), channel=Channel.EMAIL, subject="Votre rendez-vous")]
    october = rdv(local(2026, 10, 20, 9, 30))
    october_sms = sms(october, local(2026, 10, 18, 9, 30))
    expired_round = SmsReplyRound(territory_id=territory.id, phone=PHONE, rdv_ids=f"{march.id}",
                                  created_at=local(2026, 3, 9, 10), expires_at=local(2026, 3, 9, 22))
    open_round = SmsReplyRound(territory_id=territory.id, phone=PHONE, rdv_ids=f"{october.id}",
                               created_at=NOW - timedelta(hours=1), expires_at=NOW + timedelta(hours=11))
    db.session.add_all([expired_round, open_round])
    db.session.commit()
    # Ids, not objects: the rows go, and an expired object of a deleted row cannot even tell its id.
    return SimpleNamespace(organisation=organisation, territory=territory, agent=agent, mother=mother, motif=motif,
                           old=old.id, old_sms=[m.id for m in old_sms], slot=slot.id, offer=offer.id, entry=entry.id,
                           offer_sms=offer_sms.id, still_waiting=still_waiting.id, march=march.id,
                           march_sms=[m.id for m in march_sms], october=october.id, october_sms=october_sms.id,
                           expired_round=expired_round.id, open_round=open_round.id)


def reread(db, model, row_id):
    db.session.expire_all()
    return db.session.get(model, row_id)


def test_an_rdv_ended_two_years_ago_goes_with_its_links_messages_and_freed_slot(archive, db):
    report = retention.run()

    assert reread(db, Rdv, archive.old) is None
    assert not db.session.scalars(select(rdv_usagers.c.rdv_id).where(rdv_usagers.c.rdv_id == archive.old)).all()
    assert db.session.get(RdvAgent, (archive.old, archive.agent.id)) is None
    assert db.session.get(RdvLinkCheck, archive.old) is None
    assert all(db.session.get(Message, message_id) is None for message_id in [*archive.old_sms, archive.offer_sms])
    assert db.session.get(WaitlistSlot, archive.slot) is None and db.session.get(SlotOffer, archive.offer) is None
    assert db.session.get(WaitlistEntry, archive.entry) is None  # closed two years ago
    assert db.session.get(WaitlistEntry, archive.still_waiting) is not None  # still waiting: kept
    # What is younger stays.
    assert reread(db, Rdv, archive.march) is not None and reread(db, Rdv, archive.october) is not None
    assert (report.rdvs_deleted, report.messages_deleted, report.slots_deleted, report.offers_deleted,
            report.entries_deleted) == (1, 3, 1, 1, 1)


def test_messages_older_than_six_months_lose_text_and_address_but_keep_what_is_counted(archive, db):
    retention.run()

    for message_id in archive.march_sms:
        message = reread(db, Message, message_id)
        assert message.body is None and message.to_address is None and message.subject is None
        assert message.status == MessageStatus.DELIVERED and message.sent_at is not None
        assert message.kind == MessageKind.REMINDER and message.usager_id == archive.mother.id
    assert [reread(db, Message, message_id).segments for message_id in archive.march_sms] == [2, 1, 1]
    recent = reread(db, Message, archive.october_sms)
    assert recent.body.startswith("Rappel") and recent.to_address == PHONE


def test_the_statistics_of_an_anonymised_month_are_unchanged(archive, client, auth, factories):
    admin = factories.AgentFactory(organisation=archive.organisation, organisation__role=Role.ADMIN)
    auth.login(admin)
    url = f"/statistiques/organisation/{archive.organisation.id}?du=2026-03&au=2026-03"
    before = table_row(client.get(url).get_data(as_text=True), "2026-03")
    assert before[-2:] == ["2", "3"]  # 2 SMS sent, 3 segments (the e-mail is not an SMS)

    retention.run()

    assert table_row(client.get(url).get_data(as_text=True), "2026-03") == before


def test_expired_sms_reply_rounds_go_and_open_ones_stay(archive, db):
    retention.run()
    assert reread(db, SmsReplyRound, archive.expired_round) is None
    assert reread(db, SmsReplyRound, archive.open_round) is not None


def test_a_second_run_finds_nothing_to_do(archive):
    first = retention.run()
    second = retention.run()
    assert first.rdvs_deleted == 1 and first.messages_anonymised == 3
    assert second == retention.RetentionReport()


def test_small_batches_get_through_everything(archive, factories, db):
    for day in (1, 2, 3):
        factories.RdvFactory(motif=archive.motif, starts_at=local(2024, 9, day, 9),
                             ends_at=local(2024, 9, day, 9, 30), agents=[archive.agent])
    report = retention.run(batch_size=1)
    assert report.rdvs_deleted == 4 and report.messages_anonymised == 3
    assert count(db, Rdv) == 2


def test_a_dry_run_counts_what_a_run_does_and_changes_nothing(archive, db):
    rows = (count(db, Rdv), count(db, Message), count(db, SmsReplyRound))
    predicted = retention.run(dry_run=True)
    assert (count(db, Rdv), count(db, Message), count(db, SmsReplyRound)) == rows
    assert reread(db, Message, archive.march_sms[0]).body is not None

    assert retention.run() == predicted


def test_an_rdv_that_ended_just_under_two_years_ago_is_kept(archive, factories, db):
    recent_enough = factories.RdvFactory(motif=archive.motif, starts_at=NOW - timedelta(days=729, hours=1),
                                         ends_at=NOW - timedelta(days=729, minutes=30), agents=[archive.agent])
    retention.run()
    assert reread(db, Rdv, recent_enough.id) is not None


def test_durations_come_from_the_settings_and_zero_turns_a_rule_off(archive, app, db):
    saved = {key: app.config[key] for key in ("RETENTION_RDV_DAYS", "RETENTION_MESSAGE_CONTENT_DAYS")}
    app.config.update(RETENTION_RDV_DAYS=0, RETENTION_MESSAGE_CONTENT_DAYS=30)
    try:
        report = retention.run()
    finally:
        app.config.update(saved)
    assert report.rdvs_deleted == 0 and reread(db, Rdv, archive.old) is not None
    assert report.messages_anonymised == 6  # every message sent more than 30 days ago
    assert reread(db, Message, archive.october_sms).body is not None  # 28 days old


def test_the_command_says_what_it_would_do_then_does_it(archive, app, db):
    runner = app.test_cli_runner()

    dry = runner.invoke(args=["retention", "run", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "Simulation (rien n'a été modifié)" in dry.output and "Rendez-vous supprimés : 1" in dry.output
    assert "Messages anonymisés (texte et adresse effacés) : 3" in dry.output
    assert reread(db, Rdv, archive.old) is not None

    done = runner.invoke(args=["retention", "run"])
    assert done.exit_code == 0, done.output
    assert "Fait" in done.output and "Rendez-vous supprimés : 1" in done.output
    assert reread(db, Rdv, archive.old) is None
    assert "Quennehen" not in dry.output + done.output and PHONE not in dry.output + done.output


def test_the_beat_runs_it_daily(app):
    [job] = [job for job in PERIODIC_JOBS if job.task == "lapins.tasks.apply_retention"]
    assert beat_schedule(app.config)[job.name]["schedule"] == 24 * 3600


def test_the_task_runs_the_job(archive, app, db):
    from lapins.infra.celery_app import task_named as of_this_app
    from lapins.tasks import apply_retention

    assert of_this_app(apply_retention.name).delay().get()["rdvs_deleted"] == 1
    assert reread(db, Rdv, archive.old) is None


def test_the_history_of_changes_goes_after_the_same_two_years(archive, db):
    from lapins.models.audit import AuditEvent

    db.session.execute(update(AuditEvent).where(AuditEvent.object_type == "rdv", AuditEvent.object_id == archive.old)
                       .values(occurred_at=local(2024, 10, 6, 9)))
    db.session.commit()
    old_events = count(db, select(AuditEvent.id).where(AuditEvent.occurred_at < local(2025, 1, 1)).subquery())
    recent_events = count(db, select(AuditEvent.id).where(AuditEvent.occurred_at >= local(2025, 1, 1)).subquery())
    assert old_events >= 1 and recent_events >= 1

    assert retention.run(dry_run=True).audit_events_deleted == old_events
    report = retention.run()

    assert report.audit_events_deleted == old_events
    assert count(db, select(AuditEvent.id).where(AuditEvent.occurred_at < local(2025, 1, 1)).subquery()) == 0
    remaining = count(db, select(AuditEvent.id).where(AuditEvent.occurred_at >= local(2025, 1, 1)).subquery())
    assert remaining >= recent_events  # the retention's own deletions are recorded, the younger history kept
