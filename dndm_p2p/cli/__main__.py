"""``python -m dndm_p2p.cli``: the ``dndm`` command."""

import sys

from dndm_p2p.cli.main import main

sys.exit(main())
