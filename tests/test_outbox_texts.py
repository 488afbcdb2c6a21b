"""What the family reads, word for word: the confirmation and the reminder the outbox composes for a child's rdv, by
SMS and by e-mail, and the preview the agent sees. Written against the outbox room's survivors (docs/testing.md):
no other test of the room read the composed texts, so the child's first name, the lieu's address, the phone in its
national form or the e-mail's motif could go missing unnoticed."""
from __future__ import annotations

import pytest

from lapins.models import Channel, MessageKind
from lapins.notifications import links, outbox
from tests.test_outbox import PARIS, book, clock, local, make_clinic, messages  # noqa: F401 (clock: a fixture)


@pytest.fixture()
def clinic(factories, clock):
    clinic = make_clinic(factories)
    clinic.lieu.name, clinic.lieu.address = "PMI Nord", "2 rue Haute"  # short enough to keep the phone in one segment
    return clinic


def texts(db, channel: Channel) -> dict[str, object]:
    return {str(message.kind): (outbox.compose_sms(message) if channel == Channel.SMS
                                else outbox._email_subject_and_text(message))
            for message in messages(db, channel=channel)}


def test_the_sms_name_the_child_the_lieu_its_address_and_its_phone_in_the_national_form(clinic, db):
    rdv = book(clinic, local(PARIS, 10, 22, 9, 30))
    db.session.commit()
    link = links.family_url(rdv.id)
    where = "PMI Nord, 2 rue Haute. Tél 01 41 37 10 10. Infos/annuler : " + link
    assert texts(db, Channel.SMS) == {
        "created": f"PMI Nanterre : RDV de Léa confirmé le jeu. 22/10 à 9h30, {where}",
        "reminder": f"PMI Nanterre : rappel, RDV de Léa jeu. 22/10 à 9h30, {where}",
    }
    # The agent's preview is the confirmation itself, counted.
    preview = outbox.preview_sms(rdv, MessageKind.CREATED)
    assert (preview.text, preview.segments, preview.encoding, preview.reachable) == (
        texts(db, Channel.SMS)["created"], 1, "GSM-7", True)


def test_the_emails_name_the_motif_the_child_the_lieu_and_the_phone(clinic, db):
    rdv = book(clinic, local(PARIS, 10, 22, 9, 30))
    db.session.commit()
    body = ("Date : jeudi 22 octobre 2026 à 9 h 30\nMotif : Pesée du nourrisson\nPour : Léa\n"
            "Lieu : PMI Nord, 2 rue Haute\nTéléphone : 01 41 37 10 10\n\n"
            f"Voir, ajouter à mon agenda ou annuler : {links.family_url(rdv.id)}\n\n"
            "Un empêchement ? Merci d'annuler : le créneau pourra servir à une autre famille.\n\nPMI Nanterre\n\n"
            "Ce message est envoyé automatiquement, merci de ne pas y répondre.\n")
    assert texts(db, Channel.EMAIL) == {
        "created": ("Rendez-vous confirmé : jeudi 22 octobre à 9 h 30",
                    f"Bonjour,\n\nVotre rendez-vous est confirmé.\n\n{body}"),
        "reminder": ("Rappel : rendez-vous jeudi 22 octobre à 9 h 30",
                     f"Bonjour,\n\nNous vous rappelons votre rendez-vous.\n\n{body}"),
    }


@pytest.mark.parametrize("discreet", [False, True])
def test_the_sms_name_the_motif_where_it_fits_unless_it_is_discreet(clinic, db, discreet):
    clinic.lieu.phone = clinic.organisation.phone = None  # no phone to give: room for the motif
    clinic.motif.name, clinic.motif.discreet = "Pesée", discreet
    rdv = book(clinic, local(PARIS, 10, 22, 9, 30))
    db.session.commit()
    motif = "" if discreet else " (Pesée)"
    where = f"PMI Nord, 2 rue Haute. Infos/annuler : {links.family_url(rdv.id)}"
    assert texts(db, Channel.SMS) == {
        "created": f"PMI Nanterre : RDV de Léa confirmé le jeu. 22/10 à 9h30{motif}, {where}",
        "reminder": f"PMI Nanterre : rappel, RDV de Léa jeu. 22/10 à 9h30{motif}, {where}",
    }
    emails = texts(db, Channel.EMAIL)
    assert all(("Pesée" in subject + body) != discreet for subject, body in emails.values())
    assert ("Motif : Rendez-vous PMI\n" in emails["created"][1]) == discreet
