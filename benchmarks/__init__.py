"""Reproducible benchmarks (`make bench`): each compares feedstock with the raw library doing the same work."""
