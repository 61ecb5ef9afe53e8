"""The one configuration file users edit: models, prompt sets, attribution and pruning settings.

The file given, else the one ``$CT_CONFIG`` names, else ``./ct_lakehouse.yaml`` in the current
folder, else the packaged default (:mod:`ct_lake.package_data`). Relative paths inside it are
relative to the file (to the current folder for the packaged default); ``pkg:PKG/PATH`` names
a file inside an installed package. Example::

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
      - name: gemma3-4b
        preset: gemma-3-4b-pt         # a name of ct_engine.presets.PRESETS
        device: cuda
    prompt_sets:
      demo: ["The capital of the country where Mira lives is"]
    attribution: {max_n_logits: 10, desired_logit_prob: 0.95, max_feature_nodes: 7500}
    pruning: {node_threshold: 0.8, edge_threshold: 0.98}
    feature_corpus: {path: corpus.jsonl, tokens: 200000, field: text}

``feature_corpus`` is what the feature dashboards are measured on: a local ``.txt``,
``.jsonl`` or ``.parquet`` file (the toy world's generated text when no path is given for the
toy-world model); a model entry's own ``feature_corpus`` overrides the keys it gives.
``feature_explainer: "module:function"`` (off by default) names a labeller the dashboards
call on each feature card (top level, or per model entry).

A model entry names either a ``preset`` (which fixes the model, its transcoders and the
default backend) or a ``model`` with its ``transcoders``; :class:`ModelEntry` resolves a
preset's fields at load time, so every entry has ``model``, ``transcoders``, ``backend`` and
``dtype`` set. A mistake in the file is a :class:`ConfigError` of one line naming the key::

    ct_lakehouse.yaml: models[0].bakend: unknown key (did you mean 'backend'?)

Deployments override two settings from the environment, without editing the file:
``$CT_LAKE`` replaces ``lake:`` and ``$CT_MLFLOW_TRACKING_URI`` replaces
``mlflow.tracking_uri``. A relative local path in either (``CT_LAKE=data/lake``,
``sqlite:///mlflow.db``) resolves against the current working directory, as any path given on
a command line would, not against the file's folder; an empty variable counts as unset. A bad
value is a :class:`ConfigError` of one line naming the variable::

    CT_LAKE: lake 'gs://bucket/lake': unsupported scheme 'gs' (use a local path or s3://...)

Loading the configuration imports neither torch nor the engine's models: the preset table and
the backend and dtype names come from torch-free modules of ``ct_engine``.
"""

from __future__ import annotations

import difflib
import os
import re
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ct_engine.options import BACKENDS, DTYPE_NAMES
from ct_engine.presets import PRESETS
from ct_lake.keys import check_model_key
from ct_lake.package_data import config_base, default_config, resolve_path
from ct_lake.storage import LakeError, Location

CONFIG_ENV = "CT_CONFIG"
# Environment variables that override the file's ``lake:`` and ``mlflow.tracking_uri``.
LAKE_ENV = "CT_LAKE"
TRACKING_URI_ENV = "CT_MLFLOW_TRACKING_URI"

DTYPES = tuple(dict.fromkeys(DTYPE_NAMES.values()))  # canonical names: float32, bfloat16, ...
DEFAULT_DTYPE = "float32"
DEFAULT_BACKEND = "transformerlens"
# torch device strings a model can be placed on ("cuda:1", "mps", ...).
DEVICE = re.compile(r"^(cpu|cuda|mps|xpu|npu|hpu)(:\d+)?$")
_KEY_ERROR = "ct_config_key"  # a custom pydantic error type whose context names the key


class ConfigError(ValueError):
    """A configuration mistake the user can fix; ``str`` is one line naming the file and key."""


def _key_error(key: str, message: str) -> PydanticCustomError:
    """An error about ``key`` of the entry being validated (for cross-field checks)."""
    return PydanticCustomError(_KEY_ERROR, "{message}", {"key": key, "message": message})


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureCorpusSettings(_Strict):
    """The corpus of the feature dashboards and how much of it to read.

    ``path``: a local ``.txt`` (one document per line), ``.jsonl`` or ``.parquet`` file
    (absolute once loaded), None for the toy world's generated text; ``tokens``: the token
    budget; ``field``: the document's key (JSONL) or column (Parquet); ``window`` and
    ``top_k``: tokens per example context and top examples per feature (None: the engine's
    defaults). The file itself is checked when the dashboards are built, where it is read.
    """

    path: str | None = Field(default=None, min_length=1)
    tokens: int = Field(default=200_000, ge=1)
    field: str = Field(default="text", min_length=1)
    window: int | None = Field(default=None, ge=1)
    top_k: int | None = Field(default=None, ge=1)

    def spec(self):
        """The engine's ``CorpusSpec`` (imported here: ``ct_engine.features`` loads torch)."""
        from ct_engine.features.corpus import CorpusSpec

        return CorpusSpec(path=self.path, tokens=self.tokens, field=self.field)

    def options(self) -> dict[str, int]:
        """The ``build_dashboards`` keyword arguments set here (``window``, ``top_k``)."""
        return {
            name: getattr(self, name)
            for name in ("window", "top_k")
            if getattr(self, name) is not None
        }


# "package.module:function": an explainer the dashboards call (see resolve_explainer).
EXPLAINER = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
)


def _check_explainer(spec: str | None) -> str | None:
    if spec is not None and not EXPLAINER.match(spec):
        raise ValueError(f"{spec!r} is not 'module:function' (e.g. mypackage.labels:explain)")
    return spec


def resolve_explainer(spec: str | None):
    """The callable ``spec`` (``"module:function"``) names, or None for None; a one-line
    ValueError when the module cannot be imported or has no such callable."""
    if spec is None:
        return None
    import importlib

    module_name, _, name = _check_explainer(spec).partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # any import error of the user's module is reported alike
        raise ValueError(
            f"feature_explainer {spec!r}: cannot import {module_name}: {' '.join(str(err).split())}"
        ) from None
    function = getattr(module, name, None)
    if not callable(function):
        raise ValueError(f"feature_explainer {spec!r}: {module_name} has no callable {name!r}")
    return function


class ModelEntry(_Strict):
    """One model of the lakehouse: its partition key and how to load it.

    Written as ``preset`` (plus optional ``backend``/``dtype``/``device`` overrides) or as
    ``model`` + ``transcoders``. After validation ``model`` (hub id, folder or registered
    name), ``transcoders`` (reference), ``backend`` and ``dtype`` (canonical torch dtype name)
    are always set; ``preset`` stays None for a model + transcoders entry. ``device`` None
    means CUDA when available, else the CPU (decided when the model loads).

    A preset's default dtype is its advice (``bfloat16``) when ``device`` names an
    accelerator, else ``float32``; a model + transcoders entry defaults to ``float32``.
    """

    name: str
    preset: str | None = None
    model: str
    transcoders: str
    backend: Literal[BACKENDS] = DEFAULT_BACKEND  # type: ignore[valid-type]
    dtype: Literal[DTYPES] = DEFAULT_DTYPE  # type: ignore[valid-type]
    batch_size: int = Field(default=64, ge=1)
    device: str | None = None
    eval_texts: str | None = None  # text file (one prompt per line) for transcoder_quality
    eval_tokens: int = Field(default=2048, ge=1)
    feature_corpus: FeatureCorpusSettings | None = None  # overrides the top-level keys it sets
    feature_explainer: str | None = None  # overrides the top-level feature_explainer

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any) -> Any:
        """Check which form the entry has and fill a preset's model, transcoders, backend and
        dtype; unknown keys and single-field mistakes are left to the field checks."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        name = data.get("preset")
        if name is None:
            if "model" not in data:
                raise _key_error("model", "missing: give a preset, or a model with transcoders")
            if "transcoders" not in data:
                raise _key_error("transcoders", "missing: a model entry needs its transcoders")
            data.setdefault("dtype", DEFAULT_DTYPE)
            return data
        for key in ("model", "transcoders"):
            if key in data:
                raise _key_error(
                    key,
                    f"not allowed with preset {name!r}, which fixes the model and transcoders "
                    "(write model + transcoders without a preset to choose them)",
                )
        preset = PRESETS.get(name) if isinstance(name, str) else None
        if preset is None:
            data.update(model="", transcoders="")  # the preset field reports the mistake
            return data
        backend = data.setdefault("backend", preset.backend)
        if backend in BACKENDS and backend not in preset.backends:
            raise _key_error(
                "backend",
                f"preset {name!r} ({preset.architecture}) loads on "
                f"{' or '.join(preset.backends)} only, not {backend}",
            )
        device = data.get("device")
        on_accelerator = isinstance(device, str) and not device.startswith("cpu")
        data.setdefault("dtype", preset.dtype if on_accelerator else DEFAULT_DTYPE)
        data.update(model=preset.model_id, transcoders=preset.transcoders)
        return data

    @field_validator("name")
    @classmethod
    def _key(cls, name: str) -> str:
        return check_model_key(name)

    @field_validator("preset")
    @classmethod
    def _preset(cls, name: str | None) -> str | None:
        if name is not None and name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}{_did_you_mean(name, PRESETS)}")
        return name

    @field_validator("dtype", mode="before")
    @classmethod
    def _dtype(cls, dtype: Any) -> Any:
        # the engine's spellings (fp32, bf16, fp16) name the canonical dtypes
        return DTYPE_NAMES.get(dtype, dtype) if isinstance(dtype, str) else dtype

    @field_validator("device")
    @classmethod
    def _device(cls, device: str | None) -> str | None:
        if device is not None and not DEVICE.match(device):
            raise ValueError(f"{device!r} is not a torch device (cpu, cuda, cuda:1, mps, ...)")
        return device

    @field_validator("feature_explainer")
    @classmethod
    def _explainer(cls, spec: str | None) -> str | None:
        return _check_explainer(spec)


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


# URI schemes MLflow's tracking client accepts (a ``+driver`` suffix aside: postgresql+psycopg2).
TRACKING_SCHEMES = (
    "http",
    "https",
    "file",
    "sqlite",
    "postgresql",
    "mysql",
    "mssql",
    "databricks",
    "databricks-uc",
    "uc",
)
_SQLITE = "sqlite:///"


def check_tracking_uri(uri: str) -> str:
    """``uri`` if MLflow can track to it: a local folder, ``sqlite:///path``, ``http(s)://host``
    or a database URI; ValueError (one line) for an empty value, an unknown scheme, an HTTP URI
    without a host or a sqlite URI without a path."""
    if not uri or uri != uri.strip() or any(c.isspace() for c in uri):
        raise ValueError(f"{uri!r} is not an MLflow tracking URI (empty, or contains spaces)")
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri  # a local folder (MLflow's file store) or "databricks"
    base = scheme.lower().split("+", 1)[0]
    if base not in TRACKING_SCHEMES:
        raise ValueError(
            f"{uri!r}: unknown scheme {scheme!r} (use sqlite:///path, http://host:port, "
            "a database URI or a local folder)"
        )
    if base in ("http", "https") and not rest.split("/", 1)[0]:
        raise ValueError(f"{uri!r}: no host (use {base}://host:port)")
    if base == "sqlite" and (not uri.startswith(_SQLITE) or uri == _SQLITE):
        raise ValueError(f"{uri!r}: a sqlite URI is sqlite:///relative/path or sqlite:////abs/path")
    return uri


class MlflowSettings(_Strict):
    tracking_uri: str = "sqlite:///dagster_home/mlflow.db"
    experiment: str = "ct-lakehouse"
    timeout_s: float = Field(default=10.0, gt=0)
    # Where people open MLflow's UI, for the links from Dagster to each run. Default: the
    # tracking server itself when it is one, else `make mlflow`'s address.
    ui_url: str | None = None

    @field_validator("tracking_uri")
    @classmethod
    def _tracking_uri(cls, uri: str) -> str:
        return check_tracking_uri(uri)

    @field_validator("ui_url")
    @classmethod
    def _ui_url(cls, url: str | None) -> str | None:
        return None if url is None else _check_ui_url(url)


class LakehouseConfig(_Strict):
    """The parsed configuration; :func:`load_config` builds it."""

    path: Path
    lake: Path | str  # a local folder (absolute), or the URI of a lake on S3 (s3://bucket/prefix)
    mlflow: MlflowSettings = MlflowSettings()
    models: list[ModelEntry]
    prompt_sets: dict[str, list[str]] = {}
    attribution: AttributionSettings = AttributionSettings()
    pruning: PruningSettings = PruningSettings()
    interventions: InterventionSettings = InterventionSettings()
    golden: Path | None = None
    prompts_file: Path | None = None  # one prompt per line; the sensor picks up new lines
    feature_corpus: FeatureCorpusSettings = FeatureCorpusSettings()
    feature_explainer: str | None = None
    # Where people open Dagster's UI, for the links from MLflow runs back to their Dagster
    # runs. Default: ``$CT_DAGSTER_URL`` (the team profile's webserver), else `make dagster`'s.
    dagster_ui_url: str | None = None

    @field_validator("dagster_ui_url")
    @classmethod
    def _dagster_ui_url(cls, url: str | None) -> str | None:
        return None if url is None else _check_ui_url(url)

    @field_validator("feature_explainer")
    @classmethod
    def _explainer(cls, spec: str | None) -> str | None:
        return _check_explainer(spec)

    def model(self, name: str) -> ModelEntry:
        for entry in self.models:
            if entry.name == name:
                return entry
        known = ", ".join(m.name for m in self.models)
        raise ValueError(f"unknown model {name!r}: the config {self.path} declares {known}")

    def feature_corpus_for(self, name: str) -> FeatureCorpusSettings:
        """The feature corpus of model ``name``: the top-level settings with the keys its
        entry's ``feature_corpus`` gives replaced."""
        own = self.model(name).feature_corpus
        if own is None:
            return self.feature_corpus
        return self.feature_corpus.model_copy(update=own.model_dump(exclude_unset=True))

    def feature_explainer_for(self, name: str) -> str | None:
        """The ``module:function`` labeller of model ``name`` (its entry's, else the top
        level's), or None."""
        return self.model(name).feature_explainer or self.feature_explainer

    @property
    def base(self) -> Path:
        """The folder relative paths resolve against: the file's, or the current folder for
        the packaged default (:func:`ct_lake.package_data.config_base`)."""
        return config_base(self.path)

    @property
    def location(self) -> Location:
        """Where the lake lives (local folder or S3 bucket and prefix)."""
        return Location.parse(self.lake)

    @property
    def tracking_uri(self) -> str:
        """The MLflow URI with a relative sqlite path resolved against the config's folder
        (``$CT_MLFLOW_TRACKING_URI`` arrives already resolved, against the working folder)."""
        return _absolute_sqlite(self.mlflow.tracking_uri, self.base)

    @property
    def mlflow_ui_url(self) -> str:
        """The MLflow UI that shows this config's runs (no trailing slash)."""
        return self.mlflow_ui_url_for(self.tracking_uri)

    def mlflow_ui_url_for(self, tracking_uri: str) -> str:
        """The MLflow UI of runs tracked at ``tracking_uri``: the config's ``mlflow.ui_url``,
        else the tracking server itself when it is one, else `make mlflow`'s address."""
        if self.mlflow.ui_url:
            return self.mlflow.ui_url
        server = tracking_uri.startswith(("http://", "https://"))
        return tracking_uri.rstrip("/") if server else MLFLOW_UI_URL

    @property
    def dagster_url(self) -> str:
        """The Dagster UI that shows this config's runs (no trailing slash)."""
        return (
            self.dagster_ui_url
            or os.environ.get(DAGSTER_URL_ENV, "").rstrip("/")
            or (DAGSTER_UI_URL)
        )


# The addresses of `make mlflow` and `make dagster`.
MLFLOW_UI_URL = "http://127.0.0.1:5000"
DAGSTER_UI_URL = "http://127.0.0.1:3000"
DAGSTER_URL_ENV = "CT_DAGSTER_URL"  # the webserver `ct materialize` submits team runs to


def _check_ui_url(url: str) -> str:
    """An http(s) address with a host, without its trailing slash."""
    if not url.startswith(("http://", "https://")) or not url.split("://", 1)[1].split("/")[0]:
        raise ValueError(f"{url!r}: a UI address is http://host:port or https://host")
    return url.rstrip("/")


def _absolute_sqlite(uri: str, base: Path) -> str:
    """``uri`` with a relative ``sqlite:///path`` made absolute against ``base``."""
    if uri.startswith(_SQLITE) and not uri[len(_SQLITE) :].startswith("/"):
        return _SQLITE + str(base / uri[len(_SQLITE) :])
    return uri


# -- error lines ---------------------------------------------------------------------------


def _submodel(annotation) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``list[ModelEntry]``, ``X | None``...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def _owner(loc: tuple) -> type[BaseModel] | None:
    """The config model whose field the last element of ``loc`` names."""
    cls: type[BaseModel] | None = LakehouseConfig
    for part in loc[:-1]:
        if isinstance(part, int) or cls is None:
            continue
        field = cls.model_fields.get(part)
        cls = _submodel(field.annotation) if field is not None else None
    return cls


def _where(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(error: dict) -> str:
    """One ``key: message`` for a pydantic error dict."""
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and "[" in p))
    kind = error["type"]
    if kind == _KEY_ERROR:
        loc, message = (*loc, error["ctx"]["key"]), error["ctx"]["message"]
    elif kind == "extra_forbidden":
        cls = _owner(loc)
        fields = [f for f in (cls.model_fields if cls else ()) if f != "path"]
        message = "unknown key" + _did_you_mean(loc[-1], fields)
    elif kind == "missing":
        message = "missing"
    elif kind == "literal_error":
        expected = error["ctx"]["expected"].replace("'", "")
        extra = " (or fp32, bf16, fp16)" if loc[-1] == "dtype" else ""
        message = f"{error['input']!r} is not one of {expected}{extra}"
    else:
        message = error["msg"].removeprefix("Value error, ")
    return f"{_where(loc) or '(top level)'}: {message}"


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _resolved(value: str, base: Path, where: str) -> Path:
    """A path value (relative to ``base``, or ``pkg:PKG/PATH``); a ConfigError naming
    ``where`` (file and key) when it names no installed package."""
    try:
        return resolve_path(value, base)
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None


def _environment(name: str) -> str | None:
    """The value of ``$name``, None when unset or empty (an empty line in an env file)."""
    value = os.environ.get(name, "").strip()
    return value or None


def _apply_environment(raw: dict) -> None:
    """Replace ``lake`` and ``mlflow.tracking_uri`` of the file's ``raw`` mapping by
    ``$CT_LAKE`` and ``$CT_MLFLOW_TRACKING_URI``, made absolute against the working folder.

    Raises:
        ConfigError: a bad value, one line naming the variable.
    """
    lake = _environment(LAKE_ENV)
    if lake is not None:
        try:
            location = Location.parse(lake)  # relative: against the working folder
        except LakeError as err:
            raise ConfigError(f"{LAKE_ENV}: {err}") from None
        raw["lake"] = location.uri
    uri = _environment(TRACKING_URI_ENV)
    if uri is not None:
        try:
            uri = _absolute_sqlite(check_tracking_uri(uri), Path.cwd())
        except ValueError as err:
            raise ConfigError(f"{TRACKING_URI_ENV}: {err}") from None
        mlflow = raw.get("mlflow")
        mlflow = {} if mlflow is None else mlflow
        if isinstance(mlflow, dict):  # anything else is reported by the file's own validation
            raw["mlflow"] = {**mlflow, "tracking_uri": uri}


def _resolve_corpus(owner: dict, base: Path, where: str) -> None:
    """Make ``owner["feature_corpus"]["path"]`` absolute (a copy of the mapping: the
    top-level settings and an entry's may be one YAML anchor)."""
    corpus = owner.get("feature_corpus")
    if isinstance(corpus, dict) and isinstance(corpus.get("path"), str) and corpus["path"]:
        owner["feature_corpus"] = {**corpus, "path": str(_resolved(corpus["path"], base, where))}


def config_path(path: str | Path | None = None) -> Path:
    return Path(path or os.environ.get(CONFIG_ENV) or default_config()).resolve()


def _yaml_error(shown: str, err: yaml.YAMLError) -> str:
    """One line for invalid YAML: ``file:line:column: invalid YAML: problem`` (1-based)."""
    mark = getattr(err, "problem_mark", None)
    where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    context = getattr(err, "context", None)
    if context and problem.startswith("but "):  # "but found another document" needs its start
        problem = f"{context}, {problem}"
    return f"{shown}{where}: invalid YAML: {problem}"


def load_config(path: str | Path | None = None) -> LakehouseConfig:
    """Read and validate the configuration (``path``, else ``$CT_CONFIG``, else
    ``./ct_lakehouse.yaml``, else the packaged default), with ``$CT_LAKE`` and
    ``$CT_MLFLOW_TRACKING_URI`` overriding ``lake:`` and ``mlflow.tracking_uri``.

    Raises:
        ConfigError: a missing file, invalid YAML, a bad key or a bad override; the message
            is one line naming the key or the variable.
    """
    path = config_path(path)
    shown = _shown(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as err:
        raise ConfigError(f"no lakehouse config at {path} (set {CONFIG_ENV})") from err
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{shown}: not UTF-8 text (byte {err.start}: {err.object[err.start]:#04x})"
        ) from None
    except OSError as err:
        raise ConfigError(f"{shown}: cannot read the config: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(_yaml_error(shown, err)) from None
    except (ValueError, RecursionError) as err:  # a date that is no date (2001-13-45), !!int x
        problem = "nested too deeply" if isinstance(err, RecursionError) else err
        raise ConfigError(f"{shown}: invalid YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{shown}: expected a mapping at the top level")
    if "path" in raw:
        raise ConfigError(f"{shown}: path: unknown key (the file's own path is implied)")
    base = config_base(path)
    raw["path"] = path
    _apply_environment(raw)
    try:
        location = Location.parse(raw.get("lake", ".ct-lake"), base)
    except LakeError as err:
        raise ConfigError(f"{shown}: lake: {err}") from None
    raw["lake"] = location.local_path if location.is_local else location.uri
    for name in ("golden", "prompts_file"):
        if raw.get(name):
            raw[name] = _resolved(raw[name], base, f"{shown}: {name}")
    models = raw.get("models")
    if isinstance(models, list):
        names = [m.get("name") for m in models if isinstance(m, dict)]
        twice = sorted({n for n in names if names.count(n) > 1}, key=str)
        if twice:
            raise ConfigError(f"{shown}: models: names must be unique, {twice} repeat")
        for i, entry in enumerate(models):  # absolute, so that readers need not know the base
            if isinstance(entry, dict) and isinstance(entry.get("eval_texts"), str):
                where = f"{shown}: models[{i}].eval_texts"
                entry["eval_texts"] = str(_resolved(entry["eval_texts"], base, where))
            if isinstance(entry, dict):
                _resolve_corpus(entry, base, f"{shown}: models[{i}].feature_corpus.path")
    _resolve_corpus(raw, base, f"{shown}: feature_corpus.path")
    try:
        return LakehouseConfig.model_validate(raw)
    except ValidationError as err:
        lines = list(dict.fromkeys(_describe(e) for e in err.errors()))
        raise ConfigError(f"{shown}: " + "; ".join(lines)) from None
