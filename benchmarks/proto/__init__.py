"""Protobuf messages used by the benchmarks (``bench.proto``)."""
