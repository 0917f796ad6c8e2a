"""magellan-testbed controller side: comparisons, reports, benchmarks."""
