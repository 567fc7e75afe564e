"""claw_core: the pure domain of claw-connector.

Standard library only, no I/O: the model, the ports the adapters implement, the use cases, and the transport-neutral
API contract that both HTTP and the WebRTC DataChannel dispatch into. A custom frontend can import it on its own.
"""

__version__ = "0.1.0"
