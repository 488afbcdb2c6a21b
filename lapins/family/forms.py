"""The family page's forms (CSRF included, like every form of Lapins)."""
from wtforms import StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from lapins.infra.forms import Form


class IdentityForm(Form):
    letters = StringField("Les 3 premières lettres du nom de famille", validators=[
        DataRequired("Saisissez les 3 premières lettres du nom de famille."),
        Length(max=80, message="Saisissez seulement les 3 premières lettres du nom de famille."),
    ])


class FamilyCancelForm(Form):
    reason = TextAreaField("Raison de l'annulation (facultatif)", validators=[
        Optional(), Length(max=255, message="255 caractères au plus."),
    ])
