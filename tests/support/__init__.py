"""Helpers shared by the test suites: real servers that tests start, break and restart."""
