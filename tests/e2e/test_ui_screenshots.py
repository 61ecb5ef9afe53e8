"""The Dagster and MLflow UIs after a run, as a user opens them, in headless Chromium.

Three prompts are materialized on the tiny model (``ct_assets.lib.runner.materialize``: one
``graph_job`` run over their partitions) into a Dagster home and a real MLflow tracking server
(``tests/mlflowserver.py``); ``dagster dev`` serves that home as ``make dagster`` does (the
helper of ``test_dagster_webserver.py``). The config's UI addresses are those two servers, so
the links between them are the ones a user clicks. The tests check what the pages show against
the lake's ``scores`` table and save ``test-artifacts/dagster_graph_scores.png`` (the
``graph_scores`` asset at one partition: its own scores, prompt text and MLflow link) and
``test-artifacts/mlflow_runs.png`` (the experiment's runs, one per graph, with the settings and
scores as columns). The browser is the viewer tests' (``tests/viewer_browser/conftest.py``):
skipped without Chromium unless ``CT_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest

from ct_assets.lib.context import multi_key
from ct_lake.catalog import connect
from ct_lake.keys import prompt_key
from tests.assets.conftest import write_config
from tests.conftest import PROMPTS
from tests.e2e.test_dagster_webserver import HOST, READY_TIMEOUT_S, DagsterDev, free_port
from tests.mlflowserver import mlflow_server  # noqa: F401 - the session's tracking server
from tests.viewer_browser.conftest import browser  # noqa: F401 - headless Chromium

pytestmark = pytest.mark.slow  # a materialization, an MLflow server and dagster dev: ~80 s

REPO = Path(__file__).resolve().parents[2]
TEXTS = [*PROMPTS, "Austin is the capital of the state of"]
EXPERIMENT = "ui-screenshots"
SCORES = (
    "replacement_score",
    "completeness_score",
    "pruned_replacement_score",
    "pruned_completeness_score",
)
# The runs table's columns, as a user picks them in MLflow's Columns menu, with widths that
# show each header and value whole. MLflow keeps that choice in the browser's localStorage.
MLFLOW_COLUMNS = {
    "attributes.`Run Name`": 330,
    "runDateAndNestInfo": 150,
    "duration": 75,
    "params.`model`": 120,
    "params.`transcoders`": 120,
    "params.`node_threshold`": 120,
    "params.`edge_threshold`": 120,
    **{f"metrics.`{name}`": 30 + 8 * len(name) for name in SCORES},
}


@pytest.fixture(scope="module")
def artifacts() -> Path:
    root = Path(os.environ.get("CT_TEST_ARTIFACTS") or REPO / "test-artifacts")
    root.mkdir(parents=True, exist_ok=True)
    return root


@dataclass
class UiLake:
    folder: Path
    config_path: Path
    home: Path
    dagster_port: int
    mlflow_url: str
    experiment_id: str
    scores: dict[str, dict[str, float]]  # prompt key -> the lake's scores of its graph
    runs: dict[str, object]  # prompt key -> its graph's MLflow run


@pytest.fixture(scope="module")
def ui_lake(tmp_path_factory, tiny_lakehouse_files, mlflow_server) -> UiLake:  # noqa: F811
    import dagster as dg
    from mlflow.tracking import MlflowClient

    from ct_assets.lib.runner import materialize
    from ct_lake.config import load_config

    folder = tmp_path_factory.mktemp("ui-lake")
    port = free_port()
    config_path = write_config(
        folder,
        tiny_lakehouse_files,
        mlflow={"tracking_uri": mlflow_server, "experiment": EXPERIMENT, "timeout_s": 20},
        dagster_ui_url=f"http://{HOST}:{port}",
    )
    home = folder / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    # The UI's welcome dialog ("Join the Dagster community") is dismissed once per home; a user
    # who has used the UI before does not see it over the page.
    (home / ".nux").mkdir()
    (home / ".nux" / "nux.yaml").write_text("seen: 1\n")
    config = load_config(config_path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CT_CONFIG", str(config_path))
        mp.setenv("DAGSTER_HOME", str(home))
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert materialize(config, "tiny", TEXTS, instance, quiet=True).success
    con = connect(config.lake)
    scores = {}
    for text in TEXTS:
        row = con.execute(
            f"SELECT {', '.join(SCORES)} FROM scores WHERE model = 'tiny' AND prompt = ?",
            [prompt_key(text)],
        ).fetchone()
        scores[prompt_key(text)] = dict(zip(SCORES, row, strict=True))
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = {
        r.data.tags["ct.prompt_key"]: r
        for r in client.search_runs([experiment.experiment_id], max_results=100)
        if "ct.prompt_key" in r.data.tags
    }
    assert set(runs) == set(scores)  # one MLflow run per graph
    return UiLake(
        folder, config_path, home, port, mlflow_server, experiment.experiment_id, scores, runs
    )


@pytest.fixture
def dagster_ui(ui_lake):
    """``dagster dev`` over the lake's Dagster home, as ``make dagster`` starts it."""
    dev = DagsterDev(
        ui_lake.home, ui_lake.config_path, ui_lake.dagster_port, ui_lake.folder / "dev.log"
    )
    try:
        dev.wait_ready(READY_TIMEOUT_S)
        yield f"http://{HOST}:{ui_lake.dagster_port}"
    finally:
        dev.stop()


def js_text(page, value: float) -> str:
    """``value`` as the page writes a number (JavaScript's ``String(number)``)."""
    return page.evaluate("x => String(x)", value)


# The asset page's metadata table: {label: [value text, whether the value lies whole in the
# window]}.
METADATA_ROWS = """() => Object.fromEntries(
  [...document.querySelectorAll('table tr')]
    .map(tr => [...tr.querySelectorAll('td')])
    .filter(cells => cells.length >= 2 && cells[0].innerText.trim())
    .map(([label, value]) => {
      const content = value.querySelector('a, span') || value;
      const box = content.getBoundingClientRect();
      const whole = box.right <= window.innerWidth && box.bottom <= window.innerHeight;
      return [label.innerText.trim(), [value.innerText.trim(), whole]];
    }))"""


def test_dagster_asset_page_shows_each_partitions_scores_prompt_and_mlflow_link(
    ui_lake,
    dagster_ui,
    browser,  # noqa: F811
    artifacts,
):
    context = browser.new_context(viewport={"width": 1920, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        shown = {}
        # The first prompt last: the screenshot shows the demo's first graph.
        for text in [*TEXTS[1:], TEXTS[0]]:
            key = str(multi_key("tiny", prompt_key(text)))
            page.goto(
                f"{dagster_ui}/assets/graph_scores?view=partitions&partition="
                + urllib.parse.quote(key, safe="")
            )
            page.get_by_text(key, exact=True).first.wait_for()  # the partition's own panel
            page.get_by_text("prompt_text", exact=True).wait_for()
            # the last one kept: the first prompt's (also the failing partition's page)
            page.screenshot(path=str(artifacts / "dagster_graph_scores.png"))
            rows = page.evaluate(METADATA_ROWS)
            scores = ui_lake.scores[prompt_key(text)]
            for name in SCORES:
                assert rows[name] == [js_text(page, scores[name]), True], (text, name, rows)
            assert rows["prompt_text"] == [text, True]
            run = ui_lake.runs[prompt_key(text)]
            link = (
                f"{ui_lake.mlflow_url}/#/experiments/{ui_lake.experiment_id}/runs/{run.info.run_id}"
                "?workflowType=machine_learning"
            )
            assert rows["mlflow_run"] == [link, True]
            assert page.get_by_role("link", name=link).is_visible()
            shown[text] = rows["replacement_score"][0]
        assert len(set(shown.values())) == len(TEXTS)  # each partition shows its own graph

        # The link opens the graph's run in the MLflow UI, in a new tab.
        with context.expect_page() as opened:
            page.get_by_role("link", name=link).click()
        run_page = opened.value
        run_page.get_by_text(f"tiny · {TEXTS[0]}").first.wait_for()
        assert run_page.url == link
        # in MLflow's machine-learning view: the run's params and metrics, not GenAI traces
        run_page.get_by_text("replacement_score").first.wait_for()
        run_page.screenshot(path=str(artifacts / "mlflow_run_page.png"))
    finally:
        context.close()


def test_mlflow_runs_table_shows_one_run_per_graph_with_settings_and_scores(
    ui_lake,
    browser,  # noqa: F811
    artifacts,
):
    context = browser.new_context(viewport={"width": 2200, "height": 480})
    view = {"selectedColumns": list(MLFLOW_COLUMNS)[3:], "columnOrder": list(MLFLOW_COLUMNS)}
    view["columnWidths"] = MLFLOW_COLUMNS
    state_key = (
        f'MLflowLocalStorage-1.1-ExperimentPage-["{ui_lake.experiment_id}"]-ReactComponentState'
    )
    context.add_init_script(
        f"localStorage.setItem({json.dumps(state_key)}, {json.dumps(json.dumps(view))});"
        # the assistant's side panel, which opens by itself on a first visit, stays closed
        "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');"
        "localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');"
    )
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        # The classic ML view of the experiment (the "Model training" switch) and its runs.
        page.goto(
            f"{ui_lake.mlflow_url}/#/experiments/{ui_lake.experiment_id}/runs"
            "?workflowType=machine_learning"
        )
        for text in TEXTS:
            page.get_by_text(f"tiny · {text}", exact=True).wait_for()
        page.wait_for_function(GRID_COLUMNS_SET, arg=MLFLOW_COLUMNS)
        page.screenshot(path=str(artifacts / "mlflow_runs.png"))
        rows = page.evaluate(GRID_ROWS)
        # the run name cell also holds the run's colour chip ("#8a63bf\n")
        by_name = {row["attributes.`Run Name`"][0].split("\n")[-1]: row for row in rows.values()}
        for text in TEXTS:
            row = by_name[f"tiny · {text}"]
            assert row["attributes.`Run Name`"][1:] == [True, True], row  # not cut off
            run = ui_lake.runs[prompt_key(text)]
            scores = ui_lake.scores[prompt_key(text)]
            for name in SCORES:
                assert row[f"metrics.`{name}`"] == [js_text(page, scores[name]), True, True], (
                    name,
                    row,
                )
            # the model's and transcoders' references may end in an ellipsis (the tiny model's
            # are long temporary paths); the column is there
            for name in ("model", "transcoders", "node_threshold", "edge_threshold"):
                value, inside, _ = row[f"params.`{name}`"]
                assert value == run.data.params[name] and inside, (name, row)
            assert row["params.`node_threshold`"][2] and row["params.`edge_threshold`"][2], row
    finally:
        context.close()


# The runs table (an ag-grid): {row index: {column id: [cell text, whether the cell lies in the
# grid's visible part, whether its text shows whole (not cut to an ellipsis)]}}.
GRID_ROWS = """() => {
  const grid = document.querySelector('.ag-root-wrapper').getBoundingClientRect();
  const rows = {};
  for (const cell of document.querySelectorAll('.ag-row [col-id]')) {
    const index = cell.closest('.ag-row').getAttribute('row-index');
    const box = cell.getBoundingClientRect();
    const inside = box.left >= grid.left && box.right <= Math.min(grid.right, window.innerWidth)
      && box.bottom <= Math.min(grid.bottom, window.innerHeight);
    // each piece of text ends inside the cell's padding (an ellipsis hides the rest of it)
    const right = box.right - parseFloat(getComputedStyle(cell).paddingRight);
    const texts = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    let whole = true;
    for (let node = texts.nextNode(); node; node = texts.nextNode()) {
      const range = document.createRange();
      range.selectNodeContents(node);
      const text = range.getBoundingClientRect();
      if (text.width > 0 && text.right > right + 1) whole = false;
    }
    (rows[index] = rows[index] || {})[cell.getAttribute('col-id')] =
      [cell.innerText.trim(), inside, whole];
  }
  return rows;
}"""

# Until the grid shows each chosen column at its chosen width.
GRID_COLUMNS_SET = """widths => Object.entries(widths).every(([id, width]) => {
  const header = document.querySelector(`.ag-header-cell[col-id="${id}"]`);
  return header && Math.round(header.getBoundingClientRect().width) === width;
})"""
