"""Fixtures live in the claimdesk.testing plugin (loaded from pyproject's addopts)."""
