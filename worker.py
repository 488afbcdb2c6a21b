"""The Celery application: `celery -A worker worker` and `celery -A worker beat`."""
from lapins import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]

import lapins.tasks  # noqa: E402,F401  (registers the tasks)
