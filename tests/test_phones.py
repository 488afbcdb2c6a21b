"""Families' mobile numbers: metropolitan and overseas mobiles accepted and stored in E.164."""
import pytest

from lapins.locale.phones import InvalidPhone, normalize_mobile


@pytest.mark.parametrize(("typed", "territory", "stored"), [
    ("06 12 34 56 78", "75", "+33612345678"),
    ("07.56.12.34.56", "93", "+33756123456"),
    ("+33 6 12 34 56 78", "974", "+33612345678"),
    ("0692 12 34 56", "974", "+262692123456"),
    ("0690 12 34 56", "971", "+590690123456"),
    ("0696 12 34 56", "972", "+596696123456"),
    ("0694 12 34 56", "973", "+594694123456"),
    ("0639 01 23 45", "976", "+262639012345"),
    ("+262 692 12 34 56", "75", "+262692123456"),
])
def test_french_mobiles_are_stored_in_e164(typed, territory, stored):
    assert normalize_mobile(typed, territory) == stored


@pytest.mark.parametrize(("typed", "message"), [
    ("01 40 00 00 00", "pas un numéro de mobile"),
    ("06 12", "invalide"),
    ("bonjour", "invalide"),
    ("+44 7911 123456", "français"),
    ("6" * 40, "trop long"),
])
def test_bad_numbers_get_a_french_message(typed, message):
    with pytest.raises(InvalidPhone, match=message):
        normalize_mobile(typed, "75")
