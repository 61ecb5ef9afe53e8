"""``python -m ct_cli``: the ``ct`` command."""

import sys

from ct_cli.main import main

sys.exit(main())
