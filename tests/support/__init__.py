"""Helpers the test suites share (unit, integration and e2e alike)."""
