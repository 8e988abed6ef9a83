"""Faults injected on real processes and a real Redis: each test shows its figure."""
