"""Accounts: users with roles and units, argon2 passwords, browser sessions and API tokens."""
