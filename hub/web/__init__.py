"""The web edge: status board, REST API (/api/v1), live feed, OpenAPI and Prometheus metrics."""
