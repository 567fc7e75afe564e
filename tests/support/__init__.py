"""Test support: the real OpenClaw gateway (installed under .cache/openclaw) and a fake OpenAI-compatible model."""
