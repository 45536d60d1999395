"""simnet: many real DNDM nodes in one process over an emulated network, under virtual time."""
