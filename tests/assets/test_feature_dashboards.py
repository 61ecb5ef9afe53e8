"""The asset ``feature_dashboards``: the toy world's 4 x 1,024 features measured in Dagster on
a few thousand tokens, stored as three tables and circuit-tracer's feature files, queried with
the view ``feature_cards`` (a person's label from the viewer first); a tiny model with its own
corpus file and an explainer; configuration mistakes fail in one line before a model loads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import pytest
import yaml

from ct_assets.lib.resources import EngineResource, lakehouse_resources
from ct_assets.lib.runner import project_definitions
from ct_lake import features
from ct_lake.catalog import connect
from ct_lake.config import load_config
from ct_lake.keys import MODELS_PARTITIONS, prompt_key
from ct_lake.lake import Lake

from .conftest import write_config

TOY = "toy-world"
TOKENS = 3000
EXPLAINED = "explained by the test"


def explain(card) -> str | None:
    """The test's explainer (``feature_explainer`` names it): labels every feature of layer 1
    that fired, and nothing else."""
    return f"{EXPLAINED} {card.feature}" if card.layer == 1 and card.n_active else None


def _materialize(path, instance, model: str, engine: EngineResource | None = None):
    from ct_assets.defs.assets.features import feature_dashboards

    instance.add_dynamic_partitions(MODELS_PARTITIONS, [model])
    return dg.materialize(
        [feature_dashboards],
        partition_key=model,
        instance=instance,
        resources=lakehouse_resources(str(path), engine or EngineResource()),
        raise_on_error=False,
    )


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The toy world's dashboards materialized once: ``(config, result, instance)``."""
    folder = tmp_path_factory.mktemp("features-toy")
    path = folder / "ct_lakehouse.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "lake": "lake",
                "mlflow": {"tracking_uri": "sqlite:///mlflow.db", "experiment": "features"},
                "models": [{"name": TOY, "model": TOY, "transcoders": "toy-world-plt"}],
                "feature_corpus": {"tokens": TOKENS, "window": 32},
            }
        )
    )
    (folder / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(folder / "home")) as instance:
        result = _materialize(path, instance, TOY)
        yield load_config(path), result, instance


def test_the_toy_world_dashboards_fill_three_tables_and_the_feature_files(toy):
    from ct_engine.features.files import FeatureFiles

    config, result, _ = toy
    assert result.success
    lake = Lake(config.lake)
    stats = lake.read_table("feature_stats", model=TOY)
    assert stats.num_rows == 4 * 1024
    pairs = set(zip(stats["layer"].to_pylist(), stats["feature"].to_pylist(), strict=True))
    assert pairs == {(layer, f) for layer in range(4) for f in range(1024)}
    assert set(stats["n_tokens"].to_pylist()) == {TOKENS}
    n_active = stats["n_active"].to_numpy()
    np.testing.assert_allclose(stats["frequency"].to_numpy(), n_active / TOKENS)
    assert set(stats["label_source"].to_pylist()) <= {"truth", "auto", ""}
    assert "truth" in stats["label_source"].to_pylist()  # the toy world's known facts
    logits = lake.read_table("feature_logits", model=TOY)
    assert logits.num_rows == 4 * 1024 * 2 * 10  # 10 promoted and 10 suppressed tokens each
    examples = lake.read_table("feature_examples", model=TOY)
    fired = int((n_active > 0).sum())
    top = examples.filter(np.array(examples["group_rank"].to_pylist()) == 0)
    assert len(set(zip(top["layer"].to_pylist(), top["feature"].to_pylist(), strict=True))) == fired

    files = FeatureFiles(features.feature_files(lake, TOY))
    assert files.n_layers == 4 and all(files.d_transcoder(layer) == 1024 for layer in range(4))
    # every feature's record agrees with its row (circuit-tracer's reader, as the browser reads)
    rows = stats.select(["layer", "feature", "n_active", "label"]).to_pylist()
    for row in rows[:: 4 * 1024 // 64]:
        card = files.card(row["layer"], row["feature"])
        assert (card.n_active, card.label) == (row["n_active"], row["label"])

    # Dagster and MLflow show the partition's facts
    [materialization] = result.asset_materializations_for_node("feature_dashboards")
    meta = {k: v.value for k, v in materialization.metadata.items()}
    assert meta["features"] == 4096 and meta["corpus_tokens"] == TOKENS
    assert meta["dead_features"] == int((n_active == 0).sum())
    assert meta["mean_frequency"] == pytest.approx(float((n_active / TOKENS).mean()))
    sources = stats["label_source"].to_pylist()
    assert meta["labelled"] == {s: sources.count(s) for s in set(sources) if s}
    assert meta["feature_files"].endswith("features/model=toy-world/features")
    [check] = result.get_asset_check_evaluations()
    assert check.passed  # logged to MLflow


def test_feature_cards_answer_which_features_promote_ludus_and_which_are_rare(toy):
    config, _, _ = toy
    lake = Lake(config.lake)
    con = connect(lake)
    promoting = con.execute(
        "SELECT layer, feature FROM feature_cards WHERE list_contains(top_logits, 'Ludus') "
        "ORDER BY layer, feature"
    ).fetchall()
    logits = lake.read_table("feature_logits", model=TOY).to_pylist()
    expected = sorted({(r["layer"], r["feature"]) for r in logits if r["direction"] == "top"
                       and r["token"].strip() == "Ludus"})  # fmt: skip
    assert promoting == expected and len(promoting) > 0
    rare = con.execute(
        "SELECT count(*) FROM feature_cards WHERE model = ? AND frequency < 0.001", [TOY]
    ).fetchone()[0]
    n_active = lake.read_table("feature_stats", model=TOY)["n_active"].to_numpy()
    assert rare == int((n_active < 0.001 * TOKENS).sum()) > 0
    # a card's lists, strongest first, as the engine made them
    layer, feature = promoting[0]
    top, bottom = con.execute(
        "SELECT top_logits, bottom_logits FROM feature_cards WHERE layer = ? AND feature = ?",
        [layer, feature],
    ).fetchone()
    card = features.read_card(lake, TOY, layer, feature)
    assert top == [t.strip() for t, _ in card["top_logits"]] and "Ludus" in top
    assert bottom == [t.strip() for t, _ in card["bottom_logits"]]


def test_ct_sql_answers_the_same_questions(toy, capsys):
    from ct_cli.main import main
    from ct_lake.catalog import SQL_DIR

    config, _, _ = toy
    query = SQL_DIR / "queries" / "features_promoting.sql"
    args = ["--config", str(config.path), "--format", "json", "--max-rows", "0"]
    assert main(["sql", "-f", str(query), *args]) == 0
    rows = json.loads(capsys.readouterr().out)
    con = connect(config.lake)
    promoting = con.execute(
        "SELECT layer, feature FROM feature_cards WHERE list_contains(top_logits, 'Ludus')"
    ).fetchall()
    assert sorted((r["layer"], r["feature"]) for r in rows) == sorted(promoting)
    assert all(r["logit_rank"] >= 1 for r in rows) and rows
    rare = "SELECT count(*) AS n FROM feature_cards WHERE frequency < 0.001"
    assert main(["sql", rare, "--config", str(config.path), "--format", "csv"]) == 0
    expected = con.execute(rare).fetchone()[0]
    assert capsys.readouterr().out.split() == ["n", str(expected)]


def test_a_label_written_in_the_viewer_overrides_the_dashboards_label(toy):
    config, _, _ = toy
    lake = Lake(config.lake)
    prompt = prompt_key("The capital of the country where Mosho lives is")
    lake.write_table("graphs", [{"model_name": TOY, "n_tokens": 10}], model=TOY, prompt=prompt)
    con = connect(lake)
    layer, feature, label = con.execute(
        "SELECT layer, feature, label FROM feature_cards "
        "WHERE label_source = 'auto' ORDER BY layer, feature LIMIT 1"
    ).fetchone()
    now = datetime.now(UTC)
    rows = [
        {
            "id": f"{i:032x}",
            "author": "ada",
            "created_at": now + timedelta(seconds=i),
            "kind": "label",
            "node_ids": [f"{layer}_{feature}_{pos}"],
            "text": text,
        }
        for i, (pos, text) in enumerate([(3, "first thought"), (7, "capital of Soubathia")])
    ]
    lake.write_table("annotations", rows, graph=f"{TOY}__{prompt}")
    con = connect(lake)
    assert con.execute(
        "SELECT label, label_source, label_author, dashboard_label FROM feature_cards "
        "WHERE model = ? AND layer = ? AND feature = ?",
        [TOY, layer, feature],
    ).fetchone() == ("capital of Soubathia", "human", "ada", label)  # the latest one
    card = features.read_card(lake, TOY, layer, feature, con=con)
    assert (card["label"], card["label_source"]) == ("capital of Soubathia", "human")
    found = features.labels(lake, TOY, con=con)
    assert found[(layer, feature)] == ("capital of Soubathia", "human")
    labelled = con.execute("SELECT count(*) FROM feature_cards WHERE label <> ''").fetchone()[0]
    assert len(found) == labelled


# -- a model with its own corpus file, an explainer, and mistakes ---------------------------


def test_a_corpus_file_and_an_explainer_label_a_tiny_model(tmp_path, tiny_lakehouse_files):
    path = write_config(
        tmp_path,
        tiny_lakehouse_files,
        feature_explainer=f"{__name__}:explain",
    )
    raw = yaml.safe_load(path.read_text())
    raw["models"][0]["feature_corpus"] = {"tokens": 300}  # overrides the top-level budget only
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        result = _materialize(path, instance, "tiny")
    assert result.success
    stats = Lake(config.lake).read_table("feature_stats", model="tiny").to_pylist()
    assert len(stats) == 2 * 128
    assert {r["n_tokens"] for r in stats} == {300}
    assert {r["corpus"] for r in stats} == {str(tiny_lakehouse_files / "corpus.txt")}
    explained = [r for r in stats if r["label_source"] == "explainer"]
    assert explained and all(r["layer"] == 1 and r["n_active"] > 0 for r in explained)
    assert {r["label"] for r in explained} == {f"{EXPLAINED} {r['feature']}" for r in explained}
    assert {r["label_source"] for r in stats if r["layer"] == 0} <= {"auto", ""}


def _failure(result) -> str:
    [event] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    return event.step_failure_data.user_failure_data.description


@pytest.mark.parametrize(
    "change, message",
    [
        ({"feature_corpus": {"path": "missing.txt"}}, "missing.txt: no such file"),
        ({"feature_corpus": {"path": "corpus.csv"}}, "unknown format '.csv'"),
        ({"feature_explainer": "no_such_module_xyz:explain"}, "cannot import no_such_module_xyz"),
        ({"feature_explainer": "json:no_such_function"}, "json has no callable 'no_such_function'"),
    ],
)
def test_a_bad_corpus_or_explainer_fails_in_one_line_before_the_model_loads(
    tmp_path, tiny_lakehouse_files, change, message
):
    (tmp_path / "corpus.csv").write_text("text\nsome words\n")
    path = write_config(tmp_path, tiny_lakehouse_files, **change)
    engine = EngineResource()
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        result = _materialize(path, instance, "tiny", engine)
    assert not result.success
    error = _failure(result)
    assert error.startswith("feature_dashboards tiny: ") and message in error
    assert "\n" not in error and "Traceback" not in error
    assert engine.models.load_events == []  # refused before loading the model
    assert not Lake(load_config(path).lake).has_partition("feature_stats", model="tiny")


def test_a_model_without_a_corpus_is_left_unmaterialized_and_the_run_goes_on(
    tmp_path, tiny_lakehouse_files
):
    """No ``feature_corpus.path`` for a model other than the toy world: the asset is not
    materialized, a warning check says why, and the run (its other assets) succeeds."""
    from ct_assets.defs.assets.transcoders import transcoder_cache

    path = write_config(tmp_path, tiny_lakehouse_files, feature_corpus={"tokens": 300})
    engine = EngineResource()
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        from ct_assets.defs.assets.features import feature_dashboards

        instance.add_dynamic_partitions(MODELS_PARTITIONS, ["tiny"])
        result = dg.materialize(
            [transcoder_cache, feature_dashboards],
            partition_key="tiny",
            instance=instance,
            resources=lakehouse_resources(str(path), engine),
            raise_on_error=False,
        )
    assert result.success
    materialized = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}
    assert materialized == {"transcoder_cache"}
    [check] = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        and e.asset_check_evaluation_data.asset_key == dg.AssetKey("feature_dashboards")
    ]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "no feature corpus for tiny" in check.description
    assert engine.models.load_events == []
    assert not Lake(load_config(path).lake).has_partition("feature_stats", model="tiny")


def test_the_model_job_builds_the_dashboards_after_the_transcoder_cache():
    job = project_definitions().resolve_job_def("model_job")
    steps = {node.name for node in job.graph.node_defs}
    assert steps == {"transcoder_cache", "transcoder_quality", "feature_dashboards"}
    upstream = job.asset_layer.asset_graph.get(dg.AssetKey("feature_dashboards")).parent_keys
    assert upstream == {dg.AssetKey("transcoder_cache")}
