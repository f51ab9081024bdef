"""Governance built in (issue 5): the policy document, the training gate, search approvals (prior and
emergency) and two-person review before a lead is released. See docs/governance.md and docs/policy.md."""

from facetrail.governance import models as models  # registers the tables
from facetrail.governance import policy as policy  # stamps each search with its policy version
