"""Fusion metrics, baselines, evaluation, reports, the experiment and benchmarks."""
