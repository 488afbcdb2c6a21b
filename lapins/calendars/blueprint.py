"""The calendars' pages: the agent's settings (signed in) and the public feed (its secret token is the key)."""
from flask import Blueprint

bp = Blueprint("calendars", __name__)
