"""The domain: aggregates, rulebooks, policy, errors, and what records and reads them."""
