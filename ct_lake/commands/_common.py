"""What the lakehouse commands share: the ``--config`` flag."""

from __future__ import annotations

import argparse


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        help="lakehouse config (default: $CT_CONFIG, else ./ct_lakehouse.yaml, else the "
        "packaged default)",
    )
