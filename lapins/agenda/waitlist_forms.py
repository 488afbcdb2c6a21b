"""The form that puts a family on the waiting list (CSRF included)."""
from wtforms import IntegerField, SelectField
from wtforms.validators import NumberRange, Optional

from lapins.infra.forms import Form, int_or_zero
from lapins.waitlist.entries import MAX_PRIORITY


class WaitlistEntryForm(Form):
    motif_id = SelectField("Motif", coerce=int_or_zero)
    lieu_id = SelectField("Lieu", coerce=int_or_zero)
    priority = IntegerField("Priorité", default=0, validators=[
        Optional(), NumberRange(0, MAX_PRIORITY, f"Une priorité va de 0 (normale) à {MAX_PRIORITY} (la plus haute)."),
    ])


def entry_form(motifs, lieux, **kwargs) -> WaitlistEntryForm:
    form = WaitlistEntryForm(**kwargs)
    form.motif_id.choices = [(motif.id, motif.name) for motif in motifs]
    form.lieu_id.choices = [(0, "Tous les lieux")] + [(lieu.id, lieu.name) for lieu in lieux]
    return form
