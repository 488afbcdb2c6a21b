"""Statistics of an organisation and of a territory: monthly figures, charts, CSV/XLSX files, background exports."""
from lapins.stats.blueprint import bp  # noqa: F401
from lapins.stats import views  # noqa: F401,I001  (their routes register on bp)
