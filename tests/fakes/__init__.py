"""Fakes of external systems, faithful enough to pass the same contract suites as the real ones."""
