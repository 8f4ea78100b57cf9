"""Command-line entry points: offline render, benchmarks helpers."""
