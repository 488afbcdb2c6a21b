"""Administration: the organisations of a territory, and the lieux, motifs and agents of each organisation.

- forms.py: the forms, every field checked with a French message;
- services.py: what the pages change (duplicates refused, invitations sent, the last admin role kept);
- sectors.py, sector_forms.py: a territory's online booking page and its sectors (lapins.sectors);
- catalogue.py, catalogue_forms.py, catalogue_views.py: a territory's motif catalogue, adopted by its organisations;
- views.py: the pages, each authorised by lapins.policies ("administer" a territory, "configure" an organisation).
"""
from lapins.admin.blueprint import bp  # noqa: F401
from lapins.admin import views  # noqa: F401,I001  (their routes register on bp)
from lapins.admin import sectors  # noqa: F401,I001  (the online booking and sector pages, on bp too)
from lapins.admin import catalogue_views  # noqa: F401,I001  (the motif catalogue's pages, on bp too)
