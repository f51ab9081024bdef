"""Oversight: search limits, case verification, anomaly alerts, random audit sampling and e-mail
notifications (docs/oversight.md).

It builds on cases, governance, audit and policy; none of them imports it. The search path reaches it only
through facetrail.cases.hooks, where ``install()`` (called by the server and CLI wiring) registers its guard.
"""
