"""Public pages, reached without an account or a link: the commune search that address fields ask as a family or an
agent types (`communes.py`), and families' online booking (`online.py`, its pages `online_views.py`)."""
from lapins.public.blueprint import bp  # noqa: F401
from lapins.public import communes, online_views  # noqa: F401,I001  (their routes register on bp)
