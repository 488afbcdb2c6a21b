from lapins.forms import Form
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Email, Length


class LoginForm(Form):
    email = EmailField("Adresse électronique", validators=[
        DataRequired("Saisissez votre adresse électronique."),
        Email("Adresse électronique invalide (exemple : prenom.nom@departement.fr)."),
        Length(max=254),
    ])
    password = PasswordField("Mot de passe", validators=[DataRequired("Saisissez votre mot de passe."), Length(max=200)])
