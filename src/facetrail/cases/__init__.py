"""Cases: searches in a unit's scope, their history, and the human review of candidate lists.

The REST API (facetrail.service.api.searches) and the web UI (facetrail.web) both call these functions with
the signed-in Principal; scope checks and audit records live here, not in the routes.
"""
