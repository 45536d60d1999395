"""Protobuf messages used only by the test suite (``messages.proto``)."""
