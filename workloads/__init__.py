"""ATLAS-like workloads. Python >= 3.9, standard library only: they also run inside older CHOS trees."""
