"""Policy: who may do what (roles × permissions)."""
