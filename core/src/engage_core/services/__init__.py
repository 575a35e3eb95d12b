"""The use cases, one module per family: ``auth``, ``metrics``, ``idempotency``."""
