"""Adapters: implementations of claw_core ports on real technology. Never imports claw_app."""
