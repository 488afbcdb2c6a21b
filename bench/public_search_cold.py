"""The application with the public picker's kept pages, and the online search's kept pages
(lapins.public.kept_search), dropped before every request: `public.search.miss`.

A département's need × lieu pairs all fit in what a process keeps (lapins.slots.picker.KEPT_PAGES), so after one
pass over the addresses every search would be served from memory again: no order of requests keeps them missing.
What a family gets on a cold process, or just after a change drew new stamps, is measured by emptying them instead:
each search here reads every day it shows from PostgreSQL, as the first search of each pair does.
"""
from lapins import create_app
from lapins.public import kept_search
from lapins.slots import picker

lapins = create_app()


def app(environ, start_response):
    picker._kept.clear()
    kept_search.forget_all()
    return lapins(environ, start_response)
