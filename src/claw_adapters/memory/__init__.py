"""Adapters of the MemoryStore port: `sqlite` (the embedded default), `qdrant`, `postgres`, and the `in_memory` fake.

Import the module of the backend you use: this package imports none of them, so choosing SQLite never loads the
Qdrant or Postgres client libraries.
"""
