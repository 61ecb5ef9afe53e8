"""What the Dagster commands share: the config flag and the Dagster instance."""

from __future__ import annotations

import os
from pathlib import Path

from ct_lake.commands._common import add_config_flag

__all__ = [
    "INSTANCE_SETTINGS",
    "add_config_flag",
    "check_entry_resolves",
    "instance_for",
    "load",
    "load_config_of",
]

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


def load(args, model: str | None = None):
    """``(config, instance)``: :func:`load_config_of` then :func:`instance_for`."""
    config = load_config_of(args, model)
    return config, instance_for(config)


def load_config_of(args, model: str | None = None):
    """The config of ``args.config`` (also exported as ``CT_CONFIG`` for Dagster code). With
    ``model`` (a name of the config, or "" for its first), that model entry must exist and
    resolve (:func:`check_entry_resolves`). Imports neither Dagster nor torch."""
    from ct_lake.config import CONFIG_ENV, load_config

    config = load_config(args.config)
    if model is not None:
        check_entry_resolves(config, config.model(model or config.models[0].name).name)
    os.environ[CONFIG_ENV] = str(config.path)
    return config


def instance_for(config):
    """The Dagster instance of ``$DAGSTER_HOME``. Its default: in the ``local`` profile
    ``dagster_home/`` in the config's base folder (next to the file, or the current folder
    for the packaged default); in another profile (``$CT_PROFILE``) the repo's folder of that
    profile, after checking that its services answer (one line naming the first that does
    not, before anything is written)."""
    from ct_assets.lib.profiles import current_profile, profile_home

    profile = current_profile()
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

    return dg.DagsterInstance.get()


def check_entry_resolves(config, name: str) -> None:
    """Raise ``ValueError`` (one line naming the key) when the model or the transcoders of the
    config's model entry ``name`` cannot be found: a local folder that does not exist, a
    shipped name whose files are missing, or a hub id that is not in the local caches while
    the hub is off (``HF_HUB_OFFLINE``) or that the hub does not know. Checked before any run
    starts, so that a typo costs one line rather than a run of failing steps. Imports neither
    torch nor Dagster."""
    from ct_lake.lake import Lake
    from ct_lake.paths import cached_transcoders

    index = next(i for i, m in enumerate(config.models) if m.name == name)
    entry = config.models[index]
    where = f"{Path(config.path).name}: models[{index}]"
    problem = _model_problem(str(entry.model))
    if problem:
        raise ValueError(f"{where}.model: {problem}")
    if cached_transcoders(Lake(config.lake), entry.name) is None:  # else the lake's copy loads
        problem = _transcoders_problem(str(entry.transcoders))
        if problem:
            raise ValueError(f"{where}.transcoders: {problem}")


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


def _hub_problem(repo_id: str, kind: str, cached: bool) -> str | None:
    """Why the hub repository ``repo_id`` cannot be loaded, or None when it can (or when the
    hub cannot be asked: the run then says what went wrong)."""
    if cached:
        return None
    if _hub_offline():
        return f"{kind} {repo_id!r} is not in the local caches and HF_HUB_OFFLINE is set"
    try:
        from huggingface_hub import HfApi

        exists = HfApi().repo_exists(repo_id)
    except Exception:  # no network, a proxy...: not a verdict on the name
        return None
    return None if exists else f"{kind} {repo_id!r} does not exist on the Hugging Face hub"


def _model_problem(model: str) -> str | None:
    from ct_engine.presets import MODELS

    if model in MODELS:
        folder = MODELS[model]
        ok = (folder / "config.json").exists()
        return None if ok else f"the shipped model {model!r} is missing from {folder}"
    path = Path(model).expanduser()
    if path.exists():
        ok = (path / "config.json").exists()
        return None if ok else f"{model} has no config.json: not a Hugging Face model folder"
    if path.is_absolute() or model.startswith((".", "~")) or model.count("/") > 1:
        return f"model folder {model} does not exist"
    return _hub_problem(model, "model", _hub_cached(model, "config.json"))


def _transcoders_problem(ref: str) -> str | None:
    from ct_engine.presets import TRANSCODERS

    if ref in TRANSCODERS:
        folder = TRANSCODERS[ref]
        ok = (folder / "config.yaml").exists()
        return None if ok else f"the shipped transcoders {ref!r} are missing from {folder}"
    local = Path(ref).expanduser()
    if local.is_dir():
        return None
    if local.is_absolute() or ref.startswith((".", "~")):
        return f"transcoder folder {ref} does not exist"
    # a hub reference (or a shortcut): the engine's parser (it imports torch) says which
    from ct_engine.transcoders.cache import find_cache_entry
    from ct_engine.transcoders.refs import parse_transcoder_ref

    try:
        parsed = parse_transcoder_ref(ref)
    except ValueError as err:
        return str(err)
    if parsed.is_local:
        return None if parsed.local_path.is_dir() else f"transcoder folder {ref} does not exist"
    cached = find_cache_entry(parsed) is not None or _hub_cached(parsed.repo_id, None)
    return _hub_problem(parsed.repo_id, "transcoders", cached)


def _hub_cached(repo_id: str, filename: str | None) -> bool:
    """Whether the Hugging Face cache holds ``filename`` of ``repo_id`` (any file of it when
    ``filename`` is None)."""
    from huggingface_hub import constants, try_to_load_from_cache

    if filename is not None:
        return isinstance(try_to_load_from_cache(repo_id, filename), str)
    folder = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    return folder.is_dir() and any(folder.iterdir())
