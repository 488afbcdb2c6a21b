"""The signed links families receive (`/r/<token>` for an rdv, `/o/<token>` for an offer), read and written by
lapins.notifications.links and offer_links: what exactly they accept, under which key, and the URL they make.

Each test here was written against a mutant of that code that the other tests let through (docs/testing.md, the
mutation report of the links room).
"""
from __future__ import annotations

import pytest

from lapins.notifications import links, offer_links
from lapins.notifications.links import SIGNATURE_CHARS, signed_id, signed_token

SIGNERS = {"rdv": links._signature, "offer": offer_links._signature, "place": links._place_signature}
READERS = {"rdv": links.rdv_id_from_token, "offer": offer_links.offer_id_from_token,
           "place": links.place_id_from_token}
WRITERS = {"rdv": links.rdv_token, "offer": offer_links.offer_token, "place": links.place_token}


@pytest.fixture()
def config(app):
    """The app's settings, changed by the test and put back afterwards."""
    saved = {key: app.config.get(key) for key in ("SECRET_KEY", "LINK_SECRET_KEY", "PUBLIC_URL")}
    with app.test_request_context():
        yield app.config
    app.config.update(saved)


@pytest.mark.parametrize("kind", SIGNERS)
def test_a_link_signed_for_one_id_opens_no_other(config, kind):
    """The signature covers the id: another id with this signature is refused (a signature that did not depend on
    the id would open every rdv or every offer with one link)."""
    sign, read = SIGNERS[kind], READERS[kind]
    signatures = {sign(row_id) for row_id in range(1, 51)}
    assert len(signatures) == 50
    token = WRITERS[kind](7)
    assert read(token) == 7
    assert read(f"{8:x}-{token.split('-')[1]}") is None


@pytest.mark.parametrize("kind", SIGNERS)
def test_ids_are_read_up_to_twelve_hex_digits_and_from_one(config, kind):
    """The longest id read is 12 hex digits (far beyond PostgreSQL's integers): a longer one is refused even with
    its own valid signature, and so is id 0."""
    sign = SIGNERS[kind]
    longest = 16**12 - 1
    assert signed_id(signed_token(longest, sign), sign) == longest
    assert signed_id(signed_token(longest + 1, sign), sign) is None  # 13 digits, signed all the same
    assert signed_id(signed_token(0, sign), sign) is None
    assert signed_id(signed_token(1, sign), sign) == 1


@pytest.mark.parametrize("kind", SIGNERS)
def test_links_are_signed_with_link_secret_key_when_it_is_set_so_changing_secret_key_keeps_them(config, kind):
    write, read = WRITERS[kind], READERS[kind]
    config.update(SECRET_KEY="cle-de-session-1", LINK_SECRET_KEY=None)
    under_secret_key = write(42)
    config.update(LINK_SECRET_KEY="cle-des-liens")
    token = write(42)
    assert token != under_secret_key and read(under_secret_key) is None
    config.update(SECRET_KEY="cle-de-session-2")  # the session key rotated: links already sent still open
    assert read(token) == 42 and write(42) == token
    config.update(LINK_SECRET_KEY=None)
    assert read(token) is None


@pytest.mark.parametrize("public_url", ["https://rdv.pmi.example.fr", "https://rdv.pmi.example.fr/",
                                        "https://pmi.example.fr/lapins/"])
def test_the_family_and_offer_urls_join_public_url_with_one_slash(config, public_url):
    config.update(PUBLIC_URL=public_url)
    base = public_url.rstrip("/")
    assert links.family_url(5) == f"{base}/r/{links.rdv_token(5)}"
    assert offer_links.offer_url(5) == f"{base}/o/{offer_links.offer_token(5)}"
    assert links.place_url(5) == f"{base}/r/p/{links.place_token(5)}"
    assert links.family_url(5, guardian_id=3) == f"{base}/r/{links.guardian_token(5, 3)}"
    assert links.move_url(5) == f"{base}/r/{links.rdv_token(5)}/changer"


@pytest.mark.parametrize("kind", SIGNERS)
def test_a_signature_cut_short_or_lengthened_is_refused(config, kind):
    token = WRITERS[kind](9)
    for forged in (token[:-1], token + "A", token + token[-1], token.split("-")[0] + "-"):
        assert READERS[kind](forged) is None


def test_an_rdv_link_and_a_guardians_link_are_read_apart_and_a_forged_one_is_nothing(config):
    """link_of answers (rdv, None) for the plain link, (rdv, guardian) for a guardian's, and None for a forged one of
    either form: never a pair holding None, which a page would take for a link that opened."""
    plain, guardian = links.rdv_token(12), links.guardian_token(12, 4)
    plain_signature, guardian_signature = plain.partition("-")[2], guardian.partition("-")[2]
    assert links.link_of(plain) == (12, None) and links.link_of(guardian) == (12, 4)
    assert links.link_of(f"{13:x}-{plain_signature}") is None
    assert links.link_of(f"{12:x}g{5:x}-{guardian_signature}") is None
    assert links.link_of(f"{12:x}g{4:x}-{plain_signature}") is None  # the rdv's own signature
    for malformed in (f"cg-{guardian_signature}", f"g4-{guardian_signature}", "cg04-x", "cgg4-x", "c-"):
        assert links.link_of(malformed) is None


def test_a_guardians_link_whose_signature_holds_a_dash_still_opens(config):
    """The signature is URL-safe base64, whose alphabet has '-': the token is cut at its first dash, after the ids."""
    with_dash = [guardian for guardian in range(1, 400) if "-" in links.guardian_token(7, guardian).partition("-")[2]]
    assert with_dash  # about one signature in seven holds a dash
    for guardian in with_dash:
        assert links.link_of(links.guardian_token(7, guardian)) == (7, guardian)


def test_a_token_is_the_id_in_hex_and_ten_signature_characters(config):
    token = links.rdv_token(255)
    number, signature = token.split("-")
    assert number == "ff" and len(signature) == SIGNATURE_CHARS == 10
