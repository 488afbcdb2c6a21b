"""Agents sign in and out: passwords, the administrators' optional second factor, rate limits, preferences."""
from flask import Blueprint

bp = Blueprint("auth", __name__)
