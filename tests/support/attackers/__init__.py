"""Hostile programs the attack tests run in their own OS processes."""
