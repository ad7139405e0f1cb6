"""Read models that follow the event log with tracking: exactly once, resumable, rebuildable."""
