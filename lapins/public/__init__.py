"""Public pages, reached without an account or a link: for now the commune search that address fields ask as a family
or an agent types (`communes.py`); the online booking flow comes here next."""
from lapins.public.blueprint import bp  # noqa: F401
from lapins.public import communes  # noqa: F401,I001  (its routes register on bp)
