"""``dndm keygen``: write a new Ed25519 identity key file and print its peer id."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dndm_p2p.cli.exitcodes import EXIT_OK
from dndm_p2p.cli.plugins import Commands, Handler
from dndm_p2p.errors import ConfigError

__all__ = ["DEFAULT_KEY_FILE", "register"]

#: Where ``dndm keygen`` writes the key without ``--out``.
DEFAULT_KEY_FILE = "dndm.key"


def register(commands: Commands) -> Handler:
    """Add ``dndm keygen`` to ``commands``; returns its handler."""
    keygen = commands.add_parser("keygen", help="write a new Ed25519 identity key file")
    keygen.add_argument(
        "--out",
        type=Path,
        default=Path(DEFAULT_KEY_FILE),
        metavar="PATH",
        help=f"key file to write, mode 0600 (default ./{DEFAULT_KEY_FILE})",
    )
    keygen.add_argument(
        "--force", action="store_true", help="replace an existing key file (a new peer id)"
    )
    return _run


def _run(args: argparse.Namespace) -> int:
    path: Path = args.out
    if os.path.lexists(path) and not args.force:
        raise ConfigError(
            f"{path} already exists; refusing to replace it (that would change the node's "
            "peer id): pass --force to replace it"
        )
    from dndm_p2p.host.identity import generate_identity, peer_id_of, save_identity

    key_pair = generate_identity()
    save_identity(key_pair, path, overwrite=args.force)
    print(peer_id_of(key_pair), flush=True)
    print(f"dndm: wrote identity key file {path} (mode 0600)", file=sys.stderr, flush=True)
    return EXIT_OK
