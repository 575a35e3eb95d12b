"""Helpers shared by several test packages (importable because pytest puts tests/ on the path)."""
