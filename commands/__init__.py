"""Commands (pydantic models), their handlers, the embedding API and the `escrow` CLI."""
