"""The forms of the territory settings page; each field is checked as `flask territory configure` checks it."""
from __future__ import annotations

import re

from flask import current_app
from wtforms import BooleanField, PasswordField, SelectChoice, SelectField, StringField
from wtforms.validators import Length, ValidationError

from lapins.auth.identities import DOMAIN
from lapins.models import Role
from lapins.onboarding import territory as onboarding
from lapins.infra.forms import Form, Given, HourField, strip
from lapins.notifications import brevo, providers, sms_text
from lapins.territory_settings import services

ACCOUNT_SID = re.compile(r"AC[0-9a-f]{32}")
AUTH_TOKEN = re.compile(r"[0-9a-f]{32}")


def _onboarding_check(check, *args):
    try:
        return check(*args)
    except onboarding.OnboardingError as error:
        raise ValidationError(str(error)) from None


class SettingsForm(Form):
    timezone = SelectField("Fuseau horaire", choices=[SelectChoice(name, label) for name, label in onboarding.FRENCH_TIMEZONES.items()],
                           validate_choice=False)
    sms_sender = StringField("Expéditeur des SMS", filters=[strip],
                             validators=[Length(max=30, message="30 caractères au plus.")])
    messaging_service_sid = StringField("Messaging Service Twilio (facultatif)", filters=[strip],
                                        validators=[Length(max=40, message="40 caractères au plus.")])
    takes_replies = BooleanField("Les familles peuvent répondre aux SMS (OUI pour confirmer, ANNULER pour annuler)")
    confirm_everyone = BooleanField("Tous les rappels demandent de répondre OUI pour confirmer (sinon : seulement le "
                                    "rappel de la veille des familles à risque)")
    reminder_offsets = StringField("Rappels, en heures avant le rendez-vous", filters=[strip],
                                   validators=[Length(max=40, message="40 caractères au plus.")])
    quiet_hours_start = HourField("Pas de SMS à partir de", validators=[Given("Indiquez une heure (exemple : 20:00).")])
    quiet_hours_end = HourField("Jusqu'à", validators=[Given("Indiquez une heure (exemple : 08:00).")])
    moves_any_agent = BooleanField("Une famille qui change la date de son rendez-vous peut choisir un créneau de "
                                   "n'importe quel agent du lieu")

    def __init__(self, *args, territory, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.territory = territory

    def validate_timezone(self, field) -> None:
        field.data = _onboarding_check(onboarding.checked_timezone, field.data or "")

    def validate_sms_sender(self, field) -> None:
        field.data = _onboarding_check(onboarding.checked_sms_sender, field.data, self.territory.number) \
            if field.data else None
        if services.chosen_operator(self.territory) == "brevo" and (problem := brevo.sender_problem(field.data)):
            raise ValidationError(problem)

    def validate_messaging_service_sid(self, field) -> None:
        field.data = _onboarding_check(onboarding.checked_messaging_service_sid, field.data or "")

    def validate_takes_replies(self, field) -> None:
        if field.data and services.chosen_operator(self.territory) == "brevo":
            raise ValidationError(BREVO_NO_REPLIES)
        if self.sms_sender.errors or self.messaging_service_sid.errors:
            return
        _onboarding_check(lambda: onboarding.check_takes_replies(
            field.data, self.sms_sender.data, self.messaging_service_sid.data,
            way_out="ou décochez « Les familles peuvent répondre »"))

    def validate_reminder_offsets(self, field) -> None:
        field.data = _onboarding_check(onboarding.checked_reminder_offsets, field.data or "")

    def validate_quiet_hours_end(self, field) -> None:
        if self.quiet_hours_start.data is not None and field.data is not None:
            _onboarding_check(onboarding.check_quiet_hours, self.quiet_hours_start.data, field.data)

    def settings(self) -> services.Settings:
        return services.Settings(
            timezone=self.timezone.data, sms_sender=self.sms_sender.data, takes_replies=self.takes_replies.data,
            messaging_service_sid=self.messaging_service_sid.data, reminder_offsets=self.reminder_offsets.data,
            quiet_hours_start=self.quiet_hours_start.data, quiet_hours_end=self.quiet_hours_end.data,
            moves_any_agent=self.moves_any_agent.data, confirm_everyone=self.confirm_everyone.data)


class CredentialsForm(Form):
    """Secrets are never rendered back, not even after a refused submission (PasswordField)."""

    account_sid = PasswordField("Account SID", filters=[strip],
                                render_kw={"autocomplete": "off", "spellcheck": "false"})
    delete_account_sid = BooleanField("Supprimer l'Account SID enregistré")
    auth_token = PasswordField("Auth Token", filters=[strip],
                               render_kw={"autocomplete": "new-password", "spellcheck": "false"})
    delete_auth_token = BooleanField("Supprimer l'Auth Token enregistré")

    def __init__(self, *args, territory, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.territory = territory

    def validate_account_sid(self, field) -> None:
        if field.data and not ACCOUNT_SID.fullmatch(field.data):
            raise ValidationError("Un Account SID Twilio s'écrit AC suivi de 32 caractères hexadécimaux "
                                  "(0-9, a-f).")
        if field.data and self.delete_account_sid.data:
            raise ValidationError("Saisissez un nouvel Account SID ou cochez « Supprimer », pas les deux.")

    def validate_auth_token(self, field) -> None:
        if field.data and not AUTH_TOKEN.fullmatch(field.data):
            raise ValidationError("Un Auth Token Twilio compte 32 caractères hexadécimaux (0-9, a-f).")
        if field.data and self.delete_auth_token.data:
            raise ValidationError("Saisissez un nouvel Auth Token ou cochez « Supprimer », pas les deux.")

    def validate(self, extra_validators=None) -> bool:
        if not super().validate(extra_validators):
            return False
        has_sid = bool(self.account_sid.data) or (bool(self.territory.twilio_account_sid_encrypted)
                                                  and not self.delete_account_sid.data)
        has_token = bool(self.auth_token.data) or (bool(self.territory.twilio_auth_token_encrypted)
                                                   and not self.delete_auth_token.data)
        if has_sid != has_token:
            self.form_errors.append("L'Account SID et l'Auth Token vont ensemble : renseignez les deux (ce compte "
                                    "Twilio sera utilisé), ou supprimez les deux (celui de l'installation le sera).")
            return False
        return True


BREVO_NO_REPLIES = ("Avec Brevo, Lapins ne reçoit pas les réponses des familles (OUI, ANNULER) : seules leurs "
                    "demandes STOP sont suivies. Décochez « Les familles peuvent répondre ».")


class OperatorForm(Form):
    """The territory's SMS operator and its own Brevo API key (never rendered back, like the Twilio account's)."""

    operator = SelectField("Opérateur SMS", validate_choice=False)
    brevo_api_key = PasswordField("Clé API Brevo", filters=[strip],
                                  render_kw={"autocomplete": "new-password", "spellcheck": "false"})
    delete_brevo_api_key = BooleanField("Supprimer la clé API Brevo enregistrée")

    def __init__(self, *args, territory, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.territory = territory
        default = providers.OPERATORS.get(current_app.config["SMS_BACKEND"], "aucun : SMS gardés sur le serveur")
        self.operator.choices = [SelectChoice("", f"Celui de l'installation ({default})")] + [
            SelectChoice(name, label) for name, label in providers.OPERATORS.items()]

    def chosen(self) -> str | None:
        return self.operator.data or None

    def validate_operator(self, field) -> None:
        if field.data and field.data not in providers.OPERATORS:
            raise ValidationError(f"Choisissez l'opérateur dans la liste ({', '.join(providers.OPERATORS.values())}).")

    def validate_brevo_api_key(self, field) -> None:
        if field.data and not brevo.API_KEY.fullmatch(field.data):
            raise ValidationError("Une clé API Brevo s'écrit « xkeysib- » suivi de 64 caractères hexadécimaux, "
                                  "d'un tiret et de 16 lettres ou chiffres : copiez-la entière depuis Brevo.")
        if field.data and self.delete_brevo_api_key.data:
            raise ValidationError("Saisissez une nouvelle clé ou cochez « Supprimer », pas les deux.")

    def validate(self, extra_validators=None) -> bool:
        if not super().validate(extra_validators):
            return False
        territory = self.territory
        operator = self.chosen() or current_app.config["SMS_BACKEND"]
        if operator == "brevo":
            has_key = bool(self.brevo_api_key.data) or (bool(territory.brevo_api_key_encrypted)
                                                       and not self.delete_brevo_api_key.data)
            problems = [
                None if has_key or providers.has_deployment_account("brevo") else
                "L'installation n'a pas de compte Brevo : saisissez la clé API Brevo du département.",
                brevo.sender_problem(territory.sms_sender) and
                f"{brevo.sender_problem(territory.sms_sender)} Changez d'abord l'expéditeur des SMS ci-dessus.",
                BREVO_NO_REPLIES if territory.sms_takes_replies else None,
            ]
        elif operator == "twilio":
            problems = [None if territory.has_twilio_credentials or providers.has_deployment_account("twilio") else
                        "L'installation n'a pas de compte Twilio : enregistrez d'abord le compte Twilio du "
                        "département ci-dessous."]
        else:
            problems = []
        self.form_errors.extend(problem for problem in problems if problem)
        if self.form_errors:
            return False
        if self.brevo_api_key.data and (problem := services.brevo_key_problem(self.brevo_api_key.data)):
            self.brevo_api_key.errors = [problem]
            return False
        return True


def _note_field(label: str, kind: str) -> StringField:
    """The territory's own sentence for one kind of SMS (its live preview finds it by `data-sms-wording`)."""
    return StringField(label, filters=[strip], validators=[Length(max=120, message="120 caractères au plus.")],
                       render_kw={"data-sms-wording": kind})


class WordingForm(Form):
    sms_label = StringField("Nom d'expéditeur au début des SMS (facultatif)", filters=[strip],
                            validators=[Length(max=60, message="60 caractères au plus.")],
                            render_kw={"data-sms-wording": "label"})
    note_created = _note_field("Confirmation", "created")
    note_changed = _note_field("Déplacement", "changed")
    note_cancelled = _note_field("Annulation", "cancelled")
    note_reminder = _note_field("Rappel", "reminder")

    def __init__(self, *args, territory, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.territory = territory

    def note_fields(self):
        return [(kind, getattr(self, f"note_{kind}")) for kind in sms_text.KINDS]

    def validate(self, extra_validators=None) -> bool:
        """Each value is checked on its own (GSM-7, length), then each sentence on the sample SMS of its kind."""
        valid = super().validate(extra_validators)
        try:
            self.sms_label.data = sms_text.checked_label(self.sms_label.data)
        except sms_text.WordingError as error:
            self.sms_label.errors = [*self.sms_label.errors, str(error)]
            return False
        for kind, field in self.note_fields():
            if field.errors:
                continue
            try:
                field.data = sms_text.checked_note(field.data)
            except sms_text.WordingError as error:
                field.errors = [str(error)]
                valid = False
                continue
            too_long = services.note_too_long_for(self.territory, kind, label=self.sms_label.data, note=field.data)
            if too_long:
                room = services.note_room(self.territory, kind, label=self.sms_label.data)
                field.errors = [f"Phrase trop longue pour tenir dans un seul SMS ({too_long}) : {room} caractères "
                                "au plus pour ce type de SMS."]
                valid = False
        return valid

    def notes(self) -> dict[str, str | None]:
        return {kind: field.data for kind, field in self.note_fields()}


class CostForm(Form):
    """The territory's cost sentence (sms_text: added to a reminder only when it still fits one segment)."""

    cost_note = StringField("Phrase sur le coût d'un rendez-vous manqué (facultative)", filters=[strip],
                            validators=[Length(max=120, message="120 caractères au plus.")],
                            render_kw={"data-sms-cost": "1", "placeholder": services.COST_EXAMPLE})

    def __init__(self, *args, territory, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.territory = territory

    def validate_cost_note(self, field) -> None:
        try:
            field.data = sms_text.checked_note(field.data)
        except sms_text.WordingError as error:
            raise ValidationError(str(error)) from None
        if services.cost_never_fits(self.territory, field.data):
            raise ValidationError(f"Cette phrase ne tiendrait dans aucun rappel, même le plus court : "
                                  f"{services.cost_room(self.territory)} caractères SMS au plus.")


class BaselineForm(Form):
    """The territory's no-show rate before Lapins, shown beside its « taux de lapins » (lapins.stats.headline)."""

    rate = StringField("Taux de lapins avant Lapins, en % (facultatif)", filters=[strip],
                       validators=[Length(max=10, message="10 caractères au plus.")],
                       render_kw={"inputmode": "decimal", "placeholder": "12,5"})
    label = StringField("D'où vient ce taux (facultatif)", filters=[strip],
                        validators=[Length(max=80, message="80 caractères au plus.")],
                        render_kw={"placeholder": "2025, ancien outil de rendez-vous"})

    def validate_rate(self, field) -> None:
        if not field.data:
            field.data = None
            return
        text = field.data.removesuffix("%").strip().replace(",", ".")
        try:
            value = float(text)
        except ValueError:
            raise ValidationError("Indiquez un pourcentage, par exemple « 12,5 ».") from None
        if not 0 <= value <= 100 or value != value:
            raise ValidationError("Un taux est compris entre 0 et 100 %.")
        field.data = round(value * 100)  # hundredths of a percent, as stored

    def validate_label(self, field) -> None:
        field.data = field.data or None


class ExperimentForm(Form):
    """The A/B experiment on the reminder's sentence (lapins.notifications.experiment): off by default."""

    running = BooleanField("Comparer deux formulations du rappel (chaque famille tirée au sort : A ou B)")
    note_b = StringField("Phrase du rappel, variante B", filters=[strip],
                         validators=[Length(max=120, message="120 caractères au plus.")])

    def __init__(self, *args, territory, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.territory = territory

    def validate_note_b(self, field) -> None:
        try:
            field.data = sms_text.checked_note(field.data)
        except sms_text.WordingError as error:
            raise ValidationError(str(error)) from None
        if self.running.data and not field.data:
            raise ValidationError("Écrivez la phrase de la variante B : c'est elle que l'expérience compare à la "
                                  "phrase habituelle du rappel (variante A).")
        if field.data and field.data == self.territory.sms_note("reminder"):
            raise ValidationError("La variante B reprend la phrase habituelle du rappel : écrivez-en une autre.")
        too_long = services.note_too_long_for(self.territory, "reminder", label=self.territory.sms_label,
                                              note=field.data)
        if too_long:
            room = services.note_room(self.territory, "reminder", label=self.territory.sms_label)
            raise ValidationError(f"Phrase trop longue pour tenir dans un seul SMS ({too_long}) : {room} caractères "
                                  "au plus.")


class SignInForm(Form):
    """How the territory's agents sign in when the instance has an OpenID Connect provider (lapins.auth.oidc):
    the provider only, and which e-mail domains create their agents at the first sign-in (lapins.auth.identities)."""

    required = BooleanField("Les agents du département se connectent seulement avec le fournisseur d'identité")
    jit_domain = StringField("Créer à leur première connexion les agents de ce domaine (facultatif)", filters=[strip],
                             validators=[Length(max=120, message="120 caractères au plus.")],
                             render_kw={"placeholder": "departement92.fr", "autocomplete": "off"})
    jit_organisation = SelectField("Dans ce service", coerce=str, validate_choice=False)
    jit_role = SelectField("Avec ce rôle", coerce=str, validate_choice=False)

    def __init__(self, *args, territory, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.territory = territory
        self.jit_organisation.choices = [("", "—")] + [(organisation.name, organisation.name)
                                                        for organisation in territory.organisations]
        self.jit_role.choices = [(role.value, role.label) for role in Role]
        if not self.jit_role.data:
            self.jit_role.data = Role.AGENT.value

    def validate_jit_domain(self, field) -> None:
        field.data = (field.data or "").lower().lstrip("@")
        if field.data and not DOMAIN.fullmatch(field.data):
            raise ValidationError("Indiquez un domaine de messagerie, par exemple « departement92.fr ».")

    def validate_jit_organisation(self, field) -> None:
        if self.jit_domain.data and field.data not in {name for name, _ in field.choices if name}:
            raise ValidationError("Choisissez le service où ces agents seront créés.")

    def validate_jit_role(self, field) -> None:
        if field.data not in {role.value for role in Role}:
            raise ValidationError("Choisissez un rôle.")
