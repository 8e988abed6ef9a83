"""Benchmarks, run by hand (never by the tests): see each script's docstring."""
