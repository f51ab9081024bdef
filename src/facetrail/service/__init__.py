"""The HTTP service: FastAPI app, REST API (/api/v1) and the web UI's routes. Thin over the core."""
