"""What the Dagster commands share: the config flag and the Dagster instance."""

from __future__ import annotations

import os
from pathlib import Path

from ct_lake.commands._common import add_config_flag

__all__ = ["INSTANCE_SETTINGS", "add_config_flag", "load"]

# The settings of a new local Dagster home (the repo's dagster_home/dagster.yaml has the same,
# with comments): offline, and one slot per pool ("gpu": one model on the accelerator at a
# time; "duckdb_writer": one writer of a .duckdb file).
INSTANCE_SETTINGS = """\
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 4
  pools:
    default_limit: 1
    granularity: op
"""


def load(args):
    """``(config, instance)``: the config (also exported as ``CT_CONFIG`` for Dagster code)
    and the Dagster instance of ``$DAGSTER_HOME``. Its default: in the ``local`` profile
    ``dagster_home/`` in the config's base folder (next to the file, or the current folder
    for the packaged default); in another profile (``$CT_PROFILE``) the repo's folder of that
    profile, after checking that its services answer (one line naming the first that does
    not, before anything is written)."""
    from ct_assets.lib.profiles import current_profile, profile_home
    from ct_lake.config import CONFIG_ENV, load_config

    profile = current_profile()
    config = load_config(args.config)
    os.environ[CONFIG_ENV] = str(config.path)
    if profile == "local":
        home = Path(os.environ.setdefault("DAGSTER_HOME", str(config.base / "dagster_home")))
        home.mkdir(parents=True, exist_ok=True)
        settings = home / "dagster.yaml"
        if not settings.exists():  # without one Dagster prints a notice and a telemetry banner
            settings.write_text(INSTANCE_SETTINGS)
    else:
        os.environ.setdefault("DAGSTER_HOME", str(profile_home(profile)))
    if profile == "team":
        from ct_assets.lib.preflight import check_services

        check_services()
    import dagster as dg

    return config, dg.DagsterInstance.get()
