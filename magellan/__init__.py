"""magellan-testbed: what every side of the testbed shares (the contract module)."""
