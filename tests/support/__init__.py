"""Helpers and fixtures shared by the test suites (imported, never collected)."""
