"""Storage adapters for the conversation history."""
