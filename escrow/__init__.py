"""The domain: aggregates, rulebooks, policy, errors, and what records and reads them.

Also the distribution's one import root: `escrow.commands` (everything a caller touches; the
public API is `from escrow.commands import Escrow, ...`) and `escrow.projections` (read
models) are the repository's commands/ and projections/ folders, linked here and installed
inside this package. Imports still flow one way: escrow.commands → escrow.projections → the
domain, which imports neither (tests/test_layout.py).
"""
