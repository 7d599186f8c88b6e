"""Helpers shared by the test suites (imported explicitly, never through conftest files)."""
