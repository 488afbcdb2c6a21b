"""Personal data: the retention job, and a usager's data exported or erased on the family's request."""
from lapins.privacy.blueprint import bp  # noqa: F401
from lapins.privacy import views  # noqa: F401,I001  (their routes register on bp)
