"""gunicorn's settings for Lapins, read by gunicorn from the directory it starts in (docs/deploy.md, section 6).

Only what the command line cannot say well: the access log's format. Gunicorn's default logs the query string and
the referer, where a usager search (`/usagers?q=<nom ou téléphone>`) would put families' names and phone numbers;
this one logs the path alone (%(U)s), the status, the size and the time taken.
"""
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'
