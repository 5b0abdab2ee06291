"""Benchmarks that compare edgeinf with a baseline measured in the same run."""
