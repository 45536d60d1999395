"""Experiments run on simnet; each module is a command (``python -m simnet.experiments.NAME``)."""
