"""Retention rules, legal holds, subject dispositions and verifiable deletion (docs/retention.md)."""
