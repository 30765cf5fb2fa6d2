"""Benchmarks: side-by-side comparisons in one run, reported as medians and ratios."""
