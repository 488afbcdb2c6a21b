from lapins.infra.forms import Form
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Email, Length


class LoginForm(Form):
    email = EmailField("Adresse électronique", validators=[
        DataRequired("Saisissez votre adresse électronique."),
        Email("Adresse électronique invalide (exemple : prenom.nom@departement.fr)."),
        Length(max=254),
    ])
    password = PasswordField("Mot de passe", validators=[DataRequired("Saisissez votre mot de passe."), Length(max=200)])


class SecondFactorForm(Form):
    code = StringField("Code de vérification", validators=[
        DataRequired("Saisissez le code à 6 chiffres de votre application, ou un code de secours."), Length(max=40)])


class EnrolmentForm(Form):
    code = StringField("Code à 6 chiffres affiché par l'application", validators=[
        DataRequired("Saisissez le code à 6 chiffres affiché par l'application."), Length(max=40)])


class ConfirmForm(Form):
    """A button alone (starting an enrolment): the CSRF token is all there is to check."""
