"""The forms of a territory's online booking page and of its sectors (lapins.admin.sectors)."""
from __future__ import annotations

from flask_wtf.file import FileField
from wtforms import HiddenField, SelectMultipleField, StringField
from wtforms.validators import Length, Optional

from lapins.admin.forms import one_line
from lapins.infra.forms import Form


class SectorImportForm(Form):
    file = FileField("Fichier CSV des secteurs")
    # A file already checked on this page, sent again with « Enregistrer » (base64 of its zlib-compressed bytes).
    checked = HiddenField()


class CommuneFields(Form):
    """An address field: the commune typed (its suggestions fill in the INSEE code), and optionally a street."""

    commune = StringField("Commune", filters=[one_line], validators=[
        Optional(), Length(max=120, message="120 caractères au plus.")])
    commune_code = HiddenField()
    street = StringField("Code BAN de la rue (facultatif)", filters=[one_line], validators=[
        Optional(), Length(max=20, message="20 caractères au plus.")])


class ZoneForm(CommuneFields):
    pass


class AddressCheckForm(CommuneFields):
    class Meta:
        csrf = False  # a GET that changes nothing


class RemoveZoneForm(Form):
    zone = HiddenField()


class SectorMembersForm(Form):
    lieux = SelectMultipleField("Lieux qui servent ce secteur", coerce=int, validate_choice=False)
    agents = SelectMultipleField("Agents qui servent ce secteur", coerce=int, validate_choice=False)
