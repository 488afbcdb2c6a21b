"""Is this deployment working: /healthz and /metrics for monitoring, and whether each territory's messages leave
(the delivery watch, its alerts and banner, the « Santé des envois » page)."""
