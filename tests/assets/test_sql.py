"""The DuckDB views of ``sql/views/``, the catalog and ``ct sql``, on a real materialized lake.

One lake per module: 2 prompts on the tiny model, then the first prompt again with a smaller
``max_feature_nodes`` (so ``score_history`` has two runs with different scores for it).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import duckdb
import pytest

from ct_cli.main import main
from ct_lake import catalog
from ct_lake.keys import prompt_key
from ct_lake.lake import Lake
from ct_lake.tables import TABLES

from .conftest import PROMPTS, write_config

QUERIES = catalog.SQL_DIR / "queries"
DERIVED = ["graph_overview", "node_labels", "recurring_features", "score_changes", "target_paths"]


@pytest.fixture(scope="module")
def lake_config(tmp_path_factory, tiny_lakehouse_files, tiny_lake_template):
    """The config of a lake with 2 graphs (a copy of the session's ``tiny_lake_template``); the
    first prompt materialized twice."""
    import dagster as dg

    from ct_assets.lib.runner import materialize
    from ct_lake.config import load_config
    from tests.conftest import copy_tiny_lake

    folder = tmp_path_factory.mktemp("sql-lakehouse") / "lakehouse"
    config = load_config(copy_tiny_lake(tiny_lake_template, folder))
    (folder / "rerun").mkdir()
    attribution = {"max_n_logits": 5, "desired_logit_prob": 0.9, "max_feature_nodes": 120}
    rerun = load_config(
        write_config(
            folder / "rerun", tiny_lakehouse_files, lake=str(config.lake), attribution=attribution
        )
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CT_CONFIG", str(rerun.path))
        mp.setenv("DAGSTER_HOME", str(folder / "dagster_home"))
        with dg.instance_for_test(temp_dir=str(folder / "dagster_home")) as instance:
            summary = materialize(rerun, "tiny", PROMPTS[:1], instance, with_model_assets=False)
            assert summary.success
    return config


@pytest.fixture(scope="module")
def con(lake_config):
    connection = catalog.connect(lake_config.lake)
    yield connection
    connection.close()


def _records(con, query: str, params=None) -> list[dict]:
    cursor = con.execute(query, params or [])
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def _columns(con, view: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.execute(f"DESCRIBE {view}").fetchall()]


# -- the views ------------------------------------------------------------------------------


def test_every_table_has_a_base_view_and_the_order_puts_dependencies_first():
    views = catalog.load_views()
    names = [v.name for v in views]
    assert set(TABLES) <= set(names)
    assert set(DERIVED) <= set(names)
    position = {name: i for i, name in enumerate(names)}
    for view in views:
        assert all(position[dep] < position[view.name] for dep in view.depends)
        assert view.description
    assert position["node_labels"] < position["target_paths"]
    assert max(position[t] for t in TABLES) < min(position[d] for d in DERIVED)


def test_every_view_is_queryable_and_base_views_match_tables(con):
    for view in catalog.load_views():
        count = con.execute(f"SELECT count(*) FROM {view.name}").fetchone()[0]
        # the viewer writes annotations, and the human feature labels come from them
        assert count > 0 or view.name in ("annotations", "feature_human_labels"), view.name
        if view.is_base:
            assert _columns(con, view.name) == catalog.table_columns(con, TABLES[view.name])


def test_graph_overview_has_one_row_per_graph_with_its_prompt(con):
    rows = _records(con, "SELECT * FROM graph_overview")
    assert len(rows) == 2
    assert sorted(r["prompt_text"] for r in rows) == sorted(PROMPTS)
    for row in rows:
        assert row["prompt"] == prompt_key(row["prompt_text"])
        assert 0 <= row["replacement_score"] <= 1
        assert 0 <= row["pruned_completeness_score"] <= 1
        assert row["n_edges"] > 0 and row["top_target"]
    rerun = next(r for r in rows if r["prompt_text"] == PROMPTS[0])
    assert rerun["n_features"] == 120  # the latest materialization wins


def test_edges_have_no_zero_weights(con):
    total, zero = con.execute("SELECT count(*), count(*) FILTER (weight = 0) FROM edges").fetchone()
    assert total > 0 and zero == 0


def test_target_paths_weights_are_edge_products(con):
    paths = _records(
        con, "SELECT * FROM target_paths WHERE path_rank <= 3 ORDER BY prompt, target, path_rank"
    )
    two_step = [p for p in paths if p["hops"] == 2]
    assert two_step and any(p["hops"] == 1 for p in paths)
    edge = "SELECT weight FROM edges WHERE model = ? AND prompt = ? AND source = ? AND target = ?"
    for path in two_step[:5]:
        keys = [path["model"], path["prompt"]]
        first = con.execute(edge, keys + [path["source"], path["via"]]).fetchone()[0]
        second = con.execute(edge, keys + [path["via"], path["target"]]).fetchone()[0]
        assert path["path_weight"] == pytest.approx(first * second, rel=1e-6)
        assert path["via_label"].startswith(f"feature L{path['via_layer']}#{path['via_feature']}")
        assert path["source_kind"] in {"token", "error", "feature"}
    for path in paths:
        assert path["target_token"] and path["source_label"]
    # path_rank 1 is the strongest path into its target
    worse = con.execute(
        "SELECT count(*) FROM target_paths a JOIN target_paths b USING (model, prompt, target) "
        "WHERE a.path_rank = 1 AND abs(b.path_weight) > abs(a.path_weight)"
    ).fetchone()[0]
    assert worse == 0


def test_score_changes_compare_the_two_latest_runs(con):
    rows = _records(con, "SELECT * FROM score_changes")
    assert len(rows) == 1
    row = rows[0]
    assert row["prompt"] == prompt_key(PROMPTS[0]) and row["n_runs"] == 2
    assert row["latest_at"] > row["previous_at"]
    assert row["replacement_delta"] == pytest.approx(
        row["latest_replacement"] - row["previous_replacement"]
    )
    assert row["replacement_delta"] != 0  # 120 instead of 200 feature nodes
    latest = con.execute(
        "SELECT replacement_score FROM scores WHERE prompt = ?", [row["prompt"]]
    ).fetchone()[0]
    assert row["latest_replacement"] == pytest.approx(latest)


def test_recurring_features_agree_with_a_group_by_on_nodes(con, lake_config):
    direct = con.execute(
        "SELECT model, layer, feature, count(DISTINCT prompt), count(*), max(influence) "
        "FROM nodes WHERE kind = 'feature' GROUP BY ALL HAVING count(DISTINCT prompt) > 1"
    ).fetchall()
    view = con.execute(
        "SELECT model, layer, feature, n_graphs, n_nodes, max_influence FROM recurring_features"
    ).fetchall()
    assert direct and len(view) == len(direct)
    expected = {row[:5]: row[5] for row in direct}
    for row in view:
        assert row[5] == pytest.approx(expected[row[:5]])
    top = _records(con, "SELECT * FROM recurring_features LIMIT 1")[0]
    lake = Lake(lake_config.lake)
    tokens, prompts = set(), set()
    for prompt in top["prompts"]:
        graph_tokens = lake.read_table("graphs", model="tiny", prompt=prompt)["tokens"][0].as_py()
        nodes = lake.read_table("nodes", model="tiny", prompt=prompt).to_pylist()
        for node in nodes:
            if node["kind"] == "feature" and (node["layer"], node["feature"]) == (
                top["layer"],
                top["feature"],
            ):
                tokens.add(graph_tokens[node["pos"]])
                prompts.add(prompt)
    assert sorted(tokens) == top["tokens"] and sorted(prompts) == top["prompts"]


@pytest.mark.parametrize(
    ("name", "columns"),
    [
        ("recurring_features", {"layer", "feature", "n_graphs", "max_influence", "tokens"}),
        ("strongest_paths", {"prompt", "target_token", "path_weight", "source_label"}),
        ("score_changes", {"prompt", "prompt_text", "replacement_delta"}),
    ],
)
def test_readme_queries_return_rows(con, name, columns):
    cursor = con.execute((QUERIES / f"{name}.sql").read_text())
    names = {d[0] for d in cursor.description}
    assert columns <= names
    assert cursor.fetchall()


# -- catalog files and fresh lakes ----------------------------------------------------------


def test_write_catalog_file(lake_config, tmp_path):
    path = catalog.write_catalog_file(lake_config.lake, tmp_path / "catalog.duckdb")
    assert [p.name for p in tmp_path.iterdir()] == ["catalog.duckdb"]  # no temp files left
    fresh = duckdb.connect(str(path), read_only=True)
    try:
        assert fresh.execute("SELECT count(*) FROM graph_overview").fetchone()[0] == 2
    finally:
        fresh.close()
    catalog.write_catalog_file(lake_config.lake, path)  # replaces the file
    assert [p.name for p in tmp_path.iterdir()] == ["catalog.duckdb"]


def test_a_fresh_lake_has_empty_views(tmp_path):
    con = catalog.connect(tmp_path / "no-lake-yet")
    for view in catalog.load_views():
        assert con.execute(f"SELECT count(*) FROM {view.name}").fetchone()[0] == 0
        if view.is_base:
            assert _columns(con, view.name) == catalog.table_columns(con, TABLES[view.name])
    con.close()
    path = catalog.write_catalog_file(tmp_path / "no-lake-yet", tmp_path / "c.duckdb")
    with duckdb.connect(str(path), read_only=True) as fresh:
        assert fresh.execute("SELECT count(*) FROM target_paths").fetchone()[0] == 0


def test_a_lake_path_with_a_quote(tmp_path):
    lake = Lake(tmp_path / "it's a lake")
    key = prompt_key("hello")
    row = {"text": "hello", "n_chars": 5, "registered_at": datetime.now(UTC)}
    lake.write_table("prompts", [row], prompt=key)
    with catalog.connect(lake.root) as con:
        assert con.execute("SELECT prompt, text FROM prompts").fetchall() == [(key, "hello")]
        assert con.execute("SELECT count(*) FROM graph_overview").fetchone()[0] == 0


def test_a_missing_sql_folder_is_a_clear_error(tmp_path):
    with pytest.raises(catalog.CatalogError, match="no SQL view folder"):
        catalog.load_views(tmp_path)


# -- ct sql ---------------------------------------------------------------------------------

OVERVIEW = "SELECT prompt, prompt_text, n_features FROM graph_overview ORDER BY prompt"


def _ct_sql(capsys, lake_config, *args) -> tuple[int, str, str]:
    code = main(["sql", *args, "--config", str(lake_config.path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_ct_sql_prints_a_table(capsys, lake_config):
    code, out, _ = _ct_sql(capsys, lake_config, OVERVIEW)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["prompt", "prompt_text", "n_features"]
    assert set(lines[1]) <= {"-", " "}
    assert all(text in out for text in PROMPTS)
    assert lines[-1] == "(2 rows)"


def test_ct_sql_prints_csv_and_json(capsys, lake_config):
    code, out, _ = _ct_sql(capsys, lake_config, OVERVIEW, "--format", "csv")
    rows = list(csv.reader(io.StringIO(out)))
    assert code == 0 and rows[0] == ["prompt", "prompt_text", "n_features"]
    assert sorted(r[1] for r in rows[1:]) == sorted(PROMPTS)
    code, out, _ = _ct_sql(capsys, lake_config, OVERVIEW, "--format", "json")
    records = json.loads(out)
    assert code == 0 and len(records) == 2
    assert sorted(r["prompt_text"] for r in records) == sorted(PROMPTS)
    assert all(isinstance(r["n_features"], int) for r in records)


def test_ct_sql_max_rows_file_and_views(capsys, lake_config, tmp_path):
    query = tmp_path / "q.sql"
    query.write_text("SELECT node FROM nodes ORDER BY prompt, node")
    code, out, err = _ct_sql(capsys, lake_config, "--file", str(query), "--max-rows", "3")
    assert code == 0 and out.splitlines()[-1] == "(3 rows)" and "more than 3 rows" in err
    code, out, _ = _ct_sql(capsys, lake_config, "--views")
    assert code == 0
    for view in [*TABLES, *DERIVED]:
        assert f"\n{view}  (" in f"\n{out}"
    assert "path_weight" in out


@pytest.mark.parametrize("query", ["SELEC 1", "SELECT * FROM no_such_view", "SELECT 1/"])
def test_ct_sql_bad_sql_exits_2_with_one_line(capsys, lake_config, query):
    code, out, err = _ct_sql(capsys, lake_config, query)
    assert code == 2 and out == ""
    assert err.startswith("ct sql: error: ") and err.count("\n") == 1
    assert "Traceback" not in err
