"""``python -m ct_engine``: the engine's subcommands (:mod:`ct_engine.cli`)."""

import sys

from ct_engine.cli import main

sys.exit(main())
