"""Infrastructure: extension objects, database habits, the Celery app, security headers, encryption, errors."""
