"""Benchmarks for dndm-p2p."""
