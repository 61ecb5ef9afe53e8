"""The one configuration file users edit: models, prompt sets, attribution and pruning settings.

``ct_lakehouse.yaml`` at the repository root, or the file named by ``CT_CONFIG``. Relative
paths inside it are relative to the file. Example::

    lake: .ct-lake
    mlflow:
      tracking_uri: sqlite:///dagster_home/mlflow.db
      experiment: ct-lakehouse
    models:
      - name: toy-world
        model: toy-world              # Hugging Face id, local directory or registered name
        transcoders: toy-world-plt
        backend: transformerlens
        dtype: float32
        batch_size: 64
    prompt_sets:
      demo: ["The capital of the country where Mira lives is"]
    attribution: {max_n_logits: 10, desired_logit_prob: 0.95, max_feature_nodes: 7500}
    pruning: {node_threshold: 0.8, edge_threshold: 0.98}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ct_lake.keys import check_model_key

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "ct_lakehouse.yaml"
CONFIG_ENV = "CT_CONFIG"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelEntry(_Strict):
    """One model of the lakehouse: its partition key and how to load it."""

    name: str
    model: str
    transcoders: str
    backend: Literal["transformerlens"] = "transformerlens"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    batch_size: int = Field(default=64, ge=1)
    device: str | None = None
    eval_texts: str | None = None  # text file (one prompt per line) for transcoder_quality
    eval_tokens: int = Field(default=2048, ge=1)

    @field_validator("name")
    @classmethod
    def _key(cls, name: str) -> str:
        return check_model_key(name)


class AttributionSettings(_Strict):
    max_n_logits: int = Field(default=10, ge=1)
    desired_logit_prob: float = Field(default=0.95, gt=0, le=1)
    max_feature_nodes: int | None = Field(default=7500, ge=1)


class PruningSettings(_Strict):
    node_threshold: float = Field(default=0.8, ge=0, le=1)
    edge_threshold: float = Field(default=0.98, ge=0, le=1)


class InterventionSettings(_Strict):
    top_features: int = Field(default=5, ge=1)
    top_targets: int = Field(default=3, ge=1)


class MlflowSettings(_Strict):
    tracking_uri: str = "sqlite:///dagster_home/mlflow.db"
    experiment: str = "ct-lakehouse"
    timeout_s: float = Field(default=10.0, gt=0)


class LakehouseConfig(_Strict):
    """The parsed configuration; :func:`load_config` builds it."""

    path: Path
    lake: Path
    mlflow: MlflowSettings = MlflowSettings()
    models: list[ModelEntry]
    prompt_sets: dict[str, list[str]] = {}
    attribution: AttributionSettings = AttributionSettings()
    pruning: PruningSettings = PruningSettings()
    interventions: InterventionSettings = InterventionSettings()
    golden: Path | None = None
    prompts_file: Path | None = None  # one prompt per line; the sensor picks up new lines

    def model(self, name: str) -> ModelEntry:
        for entry in self.models:
            if entry.name == name:
                return entry
        known = ", ".join(m.name for m in self.models)
        raise ValueError(f"unknown model {name!r}: the config {self.path} declares {known}")

    @property
    def tracking_uri(self) -> str:
        """The MLflow URI with a relative sqlite path resolved against the config's folder."""
        uri = self.mlflow.tracking_uri
        prefix = "sqlite:///"
        if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
            return prefix + str(self.path.parent / uri[len(prefix) :])
        return uri


def config_path(path: str | Path | None = None) -> Path:
    return Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG).resolve()


def load_config(path: str | Path | None = None) -> LakehouseConfig:
    """Read and validate the configuration (``path``, else ``$CT_CONFIG``, else the repo's)."""
    path = config_path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as err:
        raise ValueError(f"no lakehouse config at {path} (set {CONFIG_ENV})") from err
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    base = path.parent
    raw["path"] = path
    raw["lake"] = base / raw.get("lake", ".ct-lake")
    for name in ("golden", "prompts_file"):
        if raw.get(name):
            raw[name] = base / raw[name]
    names = [m.get("name") for m in raw.get("models", [])]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: model names must be unique, got {names}")
    return LakehouseConfig.model_validate(raw)
