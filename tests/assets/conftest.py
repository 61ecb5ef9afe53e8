"""A lakehouse on a tiny model: config, lake and MLflow store in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import PROMPTS
from tests.mlflowserver import mlflow_server  # noqa: F401 - one server for the session


def write_config(folder: Path, files: Path, **overrides) -> Path:
    config = {
        "lake": "lake",
        "mlflow": {"tracking_uri": "sqlite:///mlflow.db", "experiment": "test", "timeout_s": 20},
        "models": [
            {
                "name": "tiny",
                "model": str(files / "model"),
                "transcoders": str(files / "plt"),
                "batch_size": 32,
                "eval_tokens": 64,
            }
        ],
        "prompt_sets": {"demo": PROMPTS},
        "attribution": {"max_n_logits": 5, "desired_logit_prob": 0.9, "max_feature_nodes": 200},
        "interventions": {"top_features": 3, "top_targets": 2},
        "feature_corpus": {"path": str(files / "corpus.txt"), "tokens": 1000, "window": 16},
    }
    config.update(overrides)
    path = folder / "ct_lakehouse.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def lakehouse(tmp_path, tiny_lakehouse_files, monkeypatch):
    """``(config, instance)`` for a fresh lakehouse; ``CT_CONFIG`` points at it."""
    import dagster as dg

    from ct_lake.config import load_config

    path = write_config(tmp_path, tiny_lakehouse_files)
    monkeypatch.setenv("CT_CONFIG", str(path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        yield load_config(path), instance
