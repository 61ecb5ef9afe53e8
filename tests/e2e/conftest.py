"""Fixtures of the end-to-end tests: the team profile's services (see tests/services.py)."""

from tests.services import team_services  # noqa: F401
