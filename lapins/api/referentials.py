"""What an agent picks from when booking: motifs, lieux and agents of its organisations (read only)."""
from __future__ import annotations

from lapins import policies
from lapins.api import render
from lapins.api.routing import implements, page
from lapins.models import Agent, Lieu, Motif


@implements("listMotifs")
def list_motifs(actor: Agent, *, query: dict, body: None):
    return page(policies.motif_scope(actor).order_by(Motif.id), query, render.motif), 200


@implements("listLieux")
def list_lieux(actor: Agent, *, query: dict, body: None):
    return page(policies.lieu_scope(actor).order_by(Lieu.id), query, render.lieu), 200


@implements("listAgents")
def list_agents(actor: Agent, *, query: dict, body: None):
    return page(policies.agent_scope(actor).order_by(Agent.id), query, lambda agent: render.agent(agent, actor)), 200
