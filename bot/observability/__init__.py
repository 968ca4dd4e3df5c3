"""What an operator sees of a running bot: logs, Prometheus metrics, and the HTTP
endpoint that serves ``/metrics`` and ``/healthz``."""
