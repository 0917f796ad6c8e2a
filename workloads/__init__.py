"""ATLAS-like workloads: the standard library and magellan.contract, uproot for ROOT files (README.md)."""
