"""Benchmarks and evaluation helpers over the clips in ../shared/data."""
