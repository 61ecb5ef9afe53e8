"""The Dagster project loads: ``ct_assets.definitions`` resolves its ``defs/`` folder."""

import dagster as dg


def test_definitions_load(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    from ct_assets.definitions import defs

    loaded = defs()
    assert isinstance(loaded, dg.Definitions)
    dg.Definitions.validate_loadable(loaded)
