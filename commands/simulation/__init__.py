"""Simulated exchange traffic for demos, benchmarks and read-model checks."""
