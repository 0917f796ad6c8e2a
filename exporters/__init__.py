"""Prometheus exporters of magellan-testbed: one collector per subsystem, pure parsers, injected paths."""
