"""Audit and replay: any state at any time, timelines, invariant checks, export, seals."""
