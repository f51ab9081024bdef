"""REST API v1 routers. Each module exposes ``router``; routes are thin calls into the core."""
