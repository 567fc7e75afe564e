"""Use cases: what the connector does, written against ports only."""
