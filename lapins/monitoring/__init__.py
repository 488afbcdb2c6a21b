"""Is this deployment working: /healthz for load balancers and monitoring."""
