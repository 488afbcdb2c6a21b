"""The forms of a territory's motif catalogue (issue 23.6): an entry is a motif's form without what stays each
organisation's own (active, collective), plus the fields organisations may adjust."""
from __future__ import annotations

from wtforms import HiddenField, SelectChoice, SelectField, SelectMultipleField
from wtforms.validators import ValidationError

from lapins.admin.forms import MotifForm
from lapins.infra.forms import Form
from lapins.models.motifs import CATALOGUE_FIELDS

ADJUSTABLE_CHOICES = [SelectChoice(name, label) for name, label in CATALOGUE_FIELDS.items()]


class CatalogueEntryForm(MotifForm):
    active = None
    collective = None
    places_per_person = None
    adjustable = SelectMultipleField("Ce que les organisations peuvent ajuster sur leur motif",
                                     choices=ADJUSTABLE_CHOICES, validate_choice=False)
    # The digest of the change shown in the preview (lapins.admin.catalogue.fingerprint); empty before it.
    confirmation = HiddenField()

    def validate_adjustable(self, field) -> None:
        field.data = list(dict.fromkeys(field.data or []))
        if set(field.data) - set(CATALOGUE_FIELDS):
            raise ValidationError("Choisissez les champs ajustables parmi la liste.")


class CatalogueLinkForm(Form):
    entry = SelectField("Motif du catalogue du territoire", validate_choice=False)
