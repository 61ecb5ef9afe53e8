"""Golden-set regression: baselines, the ``golden_drift`` check, the schedule and sensor.

One tiny-model lake is built for the module (2 golden prompts); the tests run in file order
on it: baselines are written, then re-materialized and perturbed against.
"""

from __future__ import annotations

import json
import math
import shutil
from datetime import UTC, datetime
from types import SimpleNamespace

import dagster as dg
import pytest
import yaml

from ct_assets.lib import golden
from ct_assets.lib.context import multi_key
from ct_lake.keys import prompt_key

from .conftest import PROMPTS, write_config

GOLDEN_KEYS = {multi_key("tiny", prompt_key(p)) for p in PROMPTS}


@pytest.fixture(scope="module")
def lake(tmp_path_factory, tiny_lakehouse_files):
    """A materialized tiny lakehouse whose golden set is the tiny model × both prompts."""
    from ct_assets.lib.runner import materialize
    from ct_lake.config import load_config

    folder = tmp_path_factory.mktemp("golden-lake")
    (folder / "golden").mkdir()
    (folder / "golden" / "golden_set.yaml").write_text(
        yaml.safe_dump({"models": [{"model": "tiny", "prompts": PROMPTS}]})
    )
    path = write_config(folder, tiny_lakehouse_files, golden="golden/golden_set.yaml")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CT_CONFIG", str(path))
        mp.setenv("DAGSTER_HOME", str(folder / "dagster_home"))
        (folder / "dagster_home").mkdir()
        with dg.instance_for_test(temp_dir=str(folder / "dagster_home")) as instance:
            config = load_config(path)
            summary = materialize(config, "tiny", PROMPTS, instance)
            assert summary.success
            yield SimpleNamespace(
                config=config, instance=instance, path=path, folder=folder, runs=summary.run_ids
            )


def _ct(*argv) -> int:
    from ct_cli.main import main

    return main(list(argv))


def _golden_evaluations(instance, run_ids):
    out = []
    for run_id in run_ids:
        for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            evaluation = record.dagster_event.event_specific_data
            if evaluation.check_name == "golden_drift":
                out.append(evaluation)
    return out


def _graph_scores(lake, key):
    """Materialize ``graph_scores`` alone for ``key`` (its inputs are in the lake)."""
    from ct_assets.defs.assets.graphs import graph_scores
    from ct_assets.lib.resources import lakehouse_resources

    result = dg.materialize(
        [graph_scores],
        partition_key=key,
        instance=lake.instance,
        resources=lakehouse_resources(str(lake.path)),
        raise_on_error=False,
    )
    assert result.success  # a failing check is not a failing step (the check is not blocking)
    [evaluation] = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "golden_drift"
    ]
    return evaluation, {k: v.value for k, v in evaluation.metadata.items()}


def _baseline_file(lake, prompt):
    return golden.baseline_path(lake.config, "tiny", prompt_key(prompt))


# -- on the lake, in order -----------------------------------------------------------------


def _golden_check_record(lake):
    """The latest execution record of ``golden_drift`` in the instance."""
    key = dg.AssetCheckKey(dg.AssetKey("graph_scores"), "golden_drift")
    [record] = lake.instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
    return record


def test_before_baselines_the_check_is_skipped(lake):
    """Nothing compared, nothing passed: the run planned the check and reported no result,
    which Dagster shows as skipped (a planned check of a finished, successful run)."""
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus,
    )

    from ct_lake.lake import Lake

    assert _golden_evaluations(lake.instance, lake.runs) == []
    record = _golden_check_record(lake)
    assert record.status == AssetCheckExecutionRecordStatus.PLANNED
    assert record.run_id in lake.runs and lake.instance.get_run_by_id(record.run_id).is_success
    severity, details = golden.golden_check(lake.config, Lake(lake.config.lake), min(GOLDEN_KEYS))
    assert severity == golden.SKIP and "no baseline yet" in details["note"]
    severity, details = golden.golden_check(
        lake.config, Lake(lake.config.lake), multi_key("tiny", "p_000000000000")
    )
    assert severity == golden.SKIP and not details["golden"]
    assert "not in the golden set" in details["note"]


def test_update_fails_naming_unmaterialized_cells(lake, capsys):
    other = lake.folder / "golden" / "other.yaml"
    other.write_text(yaml.safe_dump({"models": [{"model": "tiny", "prompts": ["never run"]}]}))
    config = yaml.safe_load(lake.path.read_text()) | {"golden": "golden/other.yaml"}
    path = lake.folder / "other.yaml"
    path.write_text(yaml.safe_dump(config))
    assert _ct("baseline", "update", "--config", str(path)) == 2
    err = capsys.readouterr().err
    assert str(multi_key("tiny", prompt_key("never run"))) in err
    assert "ct materialize" in err
    assert not (lake.folder / "golden" / "baselines").exists()


def test_update_writes_baselines_and_check_passes(lake, capsys):
    from ct_lake.lake import Lake

    assert _ct("baseline", "update", "--config", str(lake.path)) == 0
    assert capsys.readouterr().out.count("new baseline") == 2
    for prompt in PROMPTS:
        data = json.loads(_baseline_file(lake, prompt).read_text())
        keys = dict(model="tiny", prompt=prompt_key(prompt))
        graph = Lake(lake.config.lake).read_table("graphs", **keys).to_pylist()[0]
        assert data["prompt"] == prompt
        assert len(data["features"]) == graph["n_features"]
        assert 0 < len(data["edges"]) <= min(golden.MAX_EDGES, graph["n_edges"])
        assert data["top_target"]["token"] == graph["top_target"]
        assert set(golden.SCORES) <= set(data["scores"])
    assert _ct("baseline", "check", "--config", str(lake.path)) == 0
    out = capsys.readouterr().out
    assert out.count("PASS") == 2 and "jaccard 1.0000" in out
    # updating again reports the comparison with the old baseline
    assert _ct("baseline", "update", "--config", str(lake.path)) == 0
    assert capsys.readouterr().out.count("vs old baseline: pass") == 2


def test_rematerializing_passes_the_check(lake):
    from ct_assets.lib.runner import materialize

    summary = materialize(lake.config, "tiny", PROMPTS[:1], lake.instance, with_model_assets=False)
    assert summary.success
    [evaluation] = _golden_evaluations(lake.instance, summary.run_ids)
    meta = {k: v.value for k, v in evaluation.metadata.items()}
    assert evaluation.passed
    assert meta["severity"] == "pass" and meta["golden"] is True
    assert meta["feature_jaccard"] == 1.0 and meta["edge_pearson"] == 1.0
    assert meta["same_top_target"] is True
    assert meta["max_rel_activation_diff"] == 0.0 and meta["max_score_abs_delta"] == 0.0
    assert meta["failing_partitions"] == []


def _perturb(lake, prompt, edit):
    path = _baseline_file(lake, prompt)
    saved = path.with_suffix(".saved")
    shutil.copy(path, saved)
    data = json.loads(path.read_text())
    edit(data)
    golden.write_baseline(path, data)
    return path, saved


def test_large_perturbation_is_an_error(lake, capsys):
    prompt = PROMPTS[0]
    n = len(json.loads(_baseline_file(lake, prompt).read_text())["features"])
    dropped = math.ceil(0.3 * n)

    def edit(data):
        data["features"] = data["features"][dropped:]
        data["top_target"]["token"] = "<flipped>"

    path, saved = _perturb(lake, prompt, edit)
    try:
        evaluation, meta = _graph_scores(lake, multi_key("tiny", prompt_key(prompt)))
        assert not evaluation.passed
        assert evaluation.severity == dg.AssetCheckSeverity.ERROR
        assert meta["severity"] == "error"
        assert meta["feature_jaccard"] == pytest.approx((n - dropped) / n)
        assert meta["n_features_baseline"] == n - dropped and meta["n_features_current"] == n
        assert meta["same_top_target"] is False
        assert meta["top_target_baseline"] == "<flipped>"
        assert meta["grades"]["feature_jaccard"] == "error"
        assert meta["grades"]["same_top_target"] == "error"
        assert any("top target changed" in r for r in meta["reasons"])
        assert meta["edge_pearson"] == 1.0  # the edges were not touched
        assert meta["thresholds"]["feature_jaccard"] == {
            "pass": 0.95,
            "warn": 0.8,
            "higher_is_better": True,
        }
        assert _ct("baseline", "check", "--config", str(lake.path)) == 1
        assert "ERROR" in capsys.readouterr().out
    finally:
        shutil.move(saved, path)


def test_small_perturbation_is_a_warning(lake):
    prompt = PROMPTS[1]
    n = len(json.loads(_baseline_file(lake, prompt).read_text())["features"])
    assert n >= 20
    dropped = math.ceil(0.1 * n)

    def edit(data):
        data["features"] = data["features"][dropped:]
        data["scores"]["replacement_score"] += 0.02

    path, saved = _perturb(lake, prompt, edit)
    try:
        evaluation, meta = _graph_scores(lake, multi_key("tiny", prompt_key(prompt)))
        assert not evaluation.passed
        assert evaluation.severity == dg.AssetCheckSeverity.WARN
        assert meta["severity"] == "warn"
        assert meta["feature_jaccard"] == pytest.approx((n - dropped) / n)
        assert meta["grades"]["feature_jaccard"] == "warn"
        assert meta["replacement_score_abs_delta"] == pytest.approx(0.02, abs=1e-6)
        assert meta["grades"]["replacement_score_abs_delta"] == "warn"
        assert meta["same_top_target"] is True
    finally:
        shutil.move(saved, path)
    evaluation, meta = _graph_scores(lake, multi_key("tiny", prompt_key(prompt)))
    assert evaluation.passed and meta["feature_jaccard"] == 1.0


def test_schedule_yields_the_golden_partitions(lake):
    from ct_assets.defs.assets import files, graphs, interventions
    from ct_assets.defs.regression import golden_regression_schedule
    from ct_assets.lib.resources import LakehouseResource, lakehouse_resources

    resources = {"lakehouse": LakehouseResource(config_path=str(lake.path))}
    when = datetime(2026, 7, 1, 3, 0, tzinfo=UTC)
    context = dg.build_schedule_context(
        instance=lake.instance, scheduled_execution_time=when, resources=resources
    )
    requests = list(golden_regression_schedule(context))
    assert {r.partition_key for r in requests} == GOLDEN_KEYS and len(requests) == 2
    for request in requests:
        assert request.run_key == f"golden|2026-07-01|{request.partition_key}"
        assert request.tags["ct/suite"] == "golden"
    # as the daemon evaluates it: the partition keys resolve against the job's partitions
    defs = dg.Definitions(
        assets=[
            graphs.attribution_graph,
            graphs.pruned_graph,
            graphs.graph_scores,
            interventions.intervention_results,
            files.graph_files,
        ],
        schedules=[golden_regression_schedule],
        resources=lakehouse_resources(str(lake.path)),
    )
    context = dg.build_schedule_context(
        instance=lake.instance,
        scheduled_execution_time=when,
        resources=resources,
        repository_def=defs.get_repository_def(),
    )
    data = golden_regression_schedule.evaluate_tick(context)
    assert {r.partition_key for r in data.run_requests} == GOLDEN_KEYS
    assert golden_regression_schedule.cron_schedule == "0 3 * * *"


def test_sensor_registers_the_golden_partitions(lake):
    from ct_assets.defs.regression import golden_partitions_sensor
    from ct_assets.lib.resources import LakehouseResource

    resources = {"lakehouse": LakehouseResource(config_path=str(lake.path))}
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources=resources)
        result = golden_partitions_sensor(context)
        assert isinstance(result, dg.SensorResult) and not result.run_requests
        assert set(instance.get_dynamic_partitions("prompts")) == {prompt_key(p) for p in PROMPTS}
        assert instance.get_dynamic_partitions("models") == ["tiny"]
        again = dg.build_sensor_context(
            instance=instance, cursor=context.cursor, resources=resources
        )
        assert isinstance(golden_partitions_sensor(again), dg.SkipReason)


# -- the comparison on hand-made inputs ------------------------------------------------------


def _snapshot(features, edges, top="Paris", prob=0.5, **scores):
    base = dict.fromkeys(golden.SCORES, 0.5)
    return {
        "features": [list(f) for f in features],
        "edges": [list(e) for e in edges],
        "top_target": {"token": top, "probability": prob},
        "scores": base | scores,
    }


def test_jaccard_and_pearson_exact():
    assert golden.jaccard({1, 2, 3}, {2, 3, 4}) == 0.5
    assert golden.jaccard(set(), set()) == 1.0
    assert golden.jaccard({1}, {2}) == 0.0
    # x = 1, 2, 3; y = 2, 4, 7: cov = 5, var x = 2, var y = 114/9 -> r = 15 / sqrt(228)
    assert golden.pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(15 / math.sqrt(228), rel=1e-12)
    assert golden.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert golden.pearson([1.0, 2.0], [1.0, 2.0]) == 1.0
    assert golden.pearson([1.0], [1.0]) is None
    assert golden.pearson([1.0, 1.0], [1.0, 2.0]) is None
    assert golden.max_relative_diff([1.1, 2.0], [1.0, 2.0]) == pytest.approx(0.1)
    assert golden.max_relative_diff([], []) is None


def test_compare_exact_numbers():
    features = [(0, 1, 2, 1.0, 0.4), (0, 1, 3, 2.0, 0.3), (1, 1, 5, 4.0, 0.2), (1, 2, 6, 1.0, 0.1)]
    edges = [("l:9", "f:1:1:5", 1.0), ("f:1:1:5", "f:0:1:2", 2.0), ("f:1:1:5", "t:0", 3.0)]
    baseline = _snapshot(features, edges)
    same = golden.compare(baseline, _snapshot(features, edges))
    assert same.severity == golden.PASS and same.passed and same.reasons == []
    assert same.measures["feature_jaccard"] == 1.0 and same.measures["edge_pearson"] == 1.0

    # one feature replaced (3 shared of 5), activations +1% on one shared feature, edge weights
    # 1, 2, 3 -> 2, 4, 7, top target flipped, replacement score +0.03
    current = _snapshot(
        [(0, 1, 2, 1.01, 0.4), *features[1:3], (1, 3, 7, 1.0, 0.1)],
        [("l:9", "f:1:1:5", 2.0), ("f:1:1:5", "f:0:1:2", 4.0), ("f:1:1:5", "t:0", 7.0)],
        top="Rome",
        prob=0.47,
        replacement_score=0.53,
    )
    report = golden.compare(baseline, current)
    m = report.measures
    assert m["feature_jaccard"] == pytest.approx(3 / 5)
    assert m["n_features_shared"] == 3 and m["n_edges_shared"] == 3
    assert m["edge_pearson"] == pytest.approx(15 / math.sqrt(228))
    assert m["same_top_target"] is False
    assert m["top_target_prob_abs_delta"] == pytest.approx(0.03)
    assert m["replacement_score_abs_delta"] == pytest.approx(0.03)
    assert m["max_score_abs_delta"] == pytest.approx(0.03)
    assert m["max_rel_activation_diff"] == pytest.approx(0.01)
    assert report.grades == {
        "feature_jaccard": "error",
        "edge_pearson": "pass",
        "top_target_prob_abs_delta": "warn",
        "replacement_score_abs_delta": "warn",
        "completeness_score_abs_delta": "pass",
        "pruned_replacement_score_abs_delta": "pass",
        "pruned_completeness_score_abs_delta": "pass",
        "max_rel_activation_diff": "warn",
        "same_top_target": "error",
    }
    assert report.severity == golden.ERROR


def test_compare_grades_bands_and_edge_cases():
    features = [(0, i, 1, 1.0, 0.1) for i in range(20)]
    edges = [("l:1", f"f:0:{i}:1", float(i + 1)) for i in range(10)]
    baseline = _snapshot(features, edges)
    # 19 of 20 features: Jaccard 0.95 is still a pass; 18 of 20 (0.9) a warning
    assert golden.compare(baseline, _snapshot(features[1:], edges)).severity == golden.PASS
    assert golden.compare(baseline, _snapshot(features[2:], edges)).severity == golden.WARN
    # no shared edges while the baseline has some: an error
    other = [("l:2", f"f:0:{i}:1", 1.0) for i in range(10)]
    report = golden.compare(baseline, _snapshot(features, other))
    assert report.measures["edge_pearson"] is None and report.severity == golden.ERROR
    # a score that disappeared is an error
    report = golden.compare(baseline, _snapshot(features, edges, replacement_score=None))
    assert report.grades["replacement_score_abs_delta"] == golden.ERROR


def test_baseline_round_trip(tmp_path):
    snapshot = golden.stamp(
        {"format": golden.FORMAT, "scores": {"replacement_score": 0.25}}
        | _snapshot([(0, 1, 2, 1.5, 0.25)], [("l:3", "f:0:1:2", -0.5)])
    )
    path = golden.write_baseline(tmp_path / "tiny" / "p_0123456789ab.json", snapshot)
    assert golden.read_baseline(path) == snapshot
    assert path.read_text().count("\n") > 10  # one feature / edge per line
    assert golden.read_baseline(tmp_path / "missing.json") is None


def test_report_severity_of_a_range_is_the_worst_failing_one():
    from ct_assets.lib.steps import _severity, _worst

    warn, error = dg.AssetCheckSeverity.WARN, dg.AssetCheckSeverity.ERROR
    assert _severity((False, {})) == error  # two-item checks keep their ERROR severity
    assert _severity((False, {}, warn)) == warn
    assert _severity((False, {}, None)) == error
    assert _worst([warn, warn]) == warn
    assert _worst([warn, error]) == error
