"""The relay of the log to NATS JetStream (`escrow relay`, docs/events.md)."""
