"""Cells of ``demos/lakehouse_demo.ipynb``: materialize graphs, query them, open the UIs."""

CELLS: list[tuple[str, str]] = [
    (
        "md",
        """# The lakehouse

A notebook traces one prompt at a time. The lakehouse materializes many graphs as partitions
of Dagster assets (model × prompt), stores them in Delta Lake tables that DuckDB queries,
tracks every graph in MLflow, and shows them in a viewer. This notebook builds a small
lakehouse for three toy-world prompts in a scratch folder, queries it with SQL, and shows how
to open the viewer, MLflow and Dagster on it.

On the command line the same is `ct materialize` (the repo's `ct_lakehouse.yaml`, its lake
in `.ct-lake/`); `make demo` runs it for the demo prompts.""",
    ),
    (
        "md",
        """## A lakehouse config

`ct_lakehouse.yaml` names the lake, MLflow's store, the models and the prompts. This one
keeps everything in `lakehouse_demo_files/` and measures the feature dashboards on a small
slice of the toy world's text, to run in a couple of minutes on a CPU.""",
    ),
    (
        "code",
        """import os
import shutil
from pathlib import Path

import yaml

os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # as `ct materialize`: no INFO notes

home = Path("lakehouse_demo_files")
shutil.rmtree(home, ignore_errors=True)  # a fresh lakehouse each run
home.mkdir()
prompts = [
    "The capital of the country where Mosho lives is",
    "The capital of the country where Meivuth lives is",
    "Fivail is from a country whose capital is",
]
settings = {
    "lake": "lake",  # relative paths are relative to the config file
    "mlflow": {"tracking_uri": "sqlite:///mlflow.db", "experiment": "notebook", "timeout_s": 60},
    "models": [
        {
            "name": "toy-world",
            "model": "toy-world",
            "transcoders": "toy-world-clt",  # or toy-world-plt, the per-layer transcoders
            "batch_size": 64,
            "eval_tokens": 512,
        }
    ],
    "prompt_sets": {"demo": prompts},
    "feature_corpus": {"tokens": 4000},
}
config_path = home / "ct_lakehouse.yaml"
config_path.write_text(yaml.safe_dump(settings, sort_keys=False))
print(config_path.read_text())""",
    ),
    (
        "md",
        """## Materialize

`ct materialize --config lakehouse_demo_files/ct_lakehouse.yaml` runs Dagster's jobs in
this process: the model's assets (transcoder cache, quality, feature dashboards), then one
partition per prompt of each graph asset (attribution graph, pruned graph, scores,
interventions, viewer files), then the feature census. Its Python API is
`ct_assets.lib.runner.materialize`, with a Dagster instance in `$DAGSTER_HOME`.""",
    ),
    (
        "code",
        """import warnings

import dagster as dg

from ct_assets.commands._common import INSTANCE_SETTINGS
from ct_assets.lib.resources import EngineResource
from ct_assets.lib.runner import materialize
from ct_lake.config import load_config

os.environ["CT_CONFIG"] = str(config_path.resolve())  # what Dagster's code loads
os.environ["DAGSTER_HOME"] = str((home / "dagster_home").resolve())
(home / "dagster_home").mkdir()
(home / "dagster_home" / "dagster.yaml").write_text(INSTANCE_SETTINGS)  # telemetry off

# Inside Jupyter's running event loop, Dagster's in-process runs warn (harmlessly) that
# shutting down their own loop left a coroutine unawaited.
warnings.filterwarnings("ignore", message="coroutine 'BaseEventLoop.shutdown_asyncgens'")
config = load_config(config_path)
with dg.DagsterInstance.get() as instance:
    summary = materialize(
        config, "toy-world", prompts, instance, engine=EngineResource(verbose=False), quiet=True
    )
print("success:", summary.success)
print(len(summary.run_ids), "Dagster runs,", len(summary.partition_keys), "graph partitions")""",
    ),
    (
        "md",
        """## SQL over the graphs

Every table is a Delta table under the lake; `ct_lake.catalog.connect(lake)` gives a
DuckDB connection with a view per table and the derived views of `sql/views/` (`ct sql`
runs the same; `ct sql --views` lists them). `graph_overview`: one row per graph.""",
    ),
    (
        "code",
        '''from ct_lake.catalog import connect

con = connect(config.lake)
overview = con.execute(
    """
    SELECT prompt_text, top_target, round(top_target_prob, 3) AS p,
           round(replacement_score, 3) AS replacement,
           round(completeness_score, 3) AS completeness, n_features, n_nodes_kept
    FROM graph_overview WHERE model = 'toy-world' ORDER BY prompt_text
    """
).df()
print("graphs in the lake:", len(overview))
overview''',
    ),
    (
        "md",
        """Questions across graphs are joins. Which features recur in several graphs, how
influential are they, and what do their feature cards (`feature_cards`: the dashboards'
label, with its source, and the tokens the feature promotes) say they do?""",
    ),
    (
        "code",
        '''con.execute(
    """
    SELECT r.layer, r.feature, r.n_graphs, round(r.max_influence, 3) AS max_influence,
           c.label, c.label_source, c.top_logits[1:3] AS top_logits
    FROM recurring_features AS r
    LEFT JOIN feature_cards AS c USING (model, layer, feature)
    WHERE r.model = 'toy-world'
    ORDER BY r.max_influence DESC, r.layer, r.feature
    LIMIT 8
    """
).df()''',
    ),
    (
        "md",
        """The `interventions` table holds, for each graph's top features, the effect of
ablating them on the top targets three ways: predicted by the graph's edges, observed with
every layer frozen (the direct effect), and observed in the real model (the total effect).""",
    ),
    (
        "code",
        '''import matplotlib.pyplot as plt

effects = con.execute(
    """
    SELECT p.text AS prompt_text, i.layer, i.pos, i.feature, i.target_token,
           i.predicted_effect, i.observed_direct_effect, i.observed_total_effect
    FROM interventions AS i JOIN prompts AS p USING (prompt)
    WHERE i.model = 'toy-world' AND i.target_rank = 0
    ORDER BY p.text, i.predicted_effect
    """
).df()
gap = (effects.predicted_effect - effects.observed_direct_effect).abs().max()
print(f"{len(effects)} ablations; the direct effects are the predicted ones: {gap < 1e-3}")

fig, ax = plt.subplots(figsize=(5, 4))
ax.scatter(effects.predicted_effect, effects.observed_direct_effect, label="direct (frozen)")
ax.scatter(effects.predicted_effect, effects.observed_total_effect, label="total (real model)")
low, high = effects.predicted_effect.min(), effects.predicted_effect.max()
ax.plot([low, high], [low, high], color="gray", lw=0.5)
ax.set_xlabel("predicted by the graph")
ax.set_ylabel("observed change of the top target's logit")
ax.set_title("ablating each graph's top features")
ax.legend()
plt.tight_layout()
plt.show()''',
    ),
    (
        "md",
        """Each graph's pruned picture is stored with it (`<lake>/files/plots/...`), and shown
in Dagster's asset metadata and the MLflow run:""",
    ),
    (
        "code",
        """from IPython.display import Image

key = con.execute(
    "SELECT prompt FROM graph_overview WHERE prompt_text = ?", [prompts[0]]
).fetchone()[0]
pictures = sorted((Path(config.lake) / "files" / "plots").glob(f"*/prompt={key}/*.png"))
print([p.name for p in pictures])
Image(filename=pictures[0])""",
    ),
    (
        "md",
        """## The viewer

```bash
ct serve --config lakehouse_demo_files/ct_lakehouse.yaml     # http://127.0.0.1:8041/
```

lists the lake's graphs, prunes them at the thresholds the page asks for, shows feature
cards, keeps annotations in the lake and steers features on the model. A server blocks the
notebook, so start it in the background and stop it when done; this cell only checks that
it lists the graphs (open the address in a browser to look).""",
    ),
    (
        "code",
        """import json
import socket
import subprocess
import sys
import time
import urllib.request

with socket.socket() as s:  # a free port
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
viewer = subprocess.Popen(
    [sys.executable, "-m", "ct_cli", "serve", "--config", str(config_path), "--port", str(port)],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
)
try:
    for _ in range(600):  # wait for it to answer
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/graphs") as response:
                graphs = json.load(response)["graphs"]
            break
        except OSError:
            time.sleep(0.2)
    print(f"the viewer lists {len(graphs)} graphs")
    for g in graphs:
        print(f"  {g['prompt_text']!r}: top target {g['top_target']}")
finally:
    viewer.terminate()  # in your notebook: keep it running while you look
    viewer.wait()""",
    ),
    (
        "md",
        """## MLflow and Dagster

One MLflow run per graph holds its params (model, transcoders, prompt, thresholds...),
metrics (scores, sizes, timings) and artifacts (viewer JSON, the picture). To browse them:

```bash
mlflow ui --backend-store-uri sqlite:///lakehouse_demo_files/mlflow.db --port 5000
# then http://127.0.0.1:5000/#/experiments?workflowType=machine_learning ("Model training")
```

(`make mlflow` does this for the repo's lakehouse.) The runs are also a DataFrame:""",
    ),
    (
        "code",
        """import mlflow

mlflow.set_tracking_uri(config.tracking_uri)  # relative paths resolved against the config
runs = mlflow.search_runs(experiment_names=["notebook"])
graph_runs = runs[runs["params.prompt_text"].notna()]
print(len(runs), "runs, of which", len(graph_runs), "for graphs")
graph_runs[["params.prompt_text", "params.transcoders", "metrics.replacement_score"]].sort_values(
    "params.prompt_text"
)""",
    ),
    (
        "md",
        """Dagster's UI shows the runs, every asset's partitions with their metadata, and the
checks:

```bash
export DAGSTER_HOME=$PWD/lakehouse_demo_files/dagster_home
export CT_CONFIG=$PWD/lakehouse_demo_files/ct_lakehouse.yaml
dagster dev -h 127.0.0.1 -p 3000 -m ct_assets.definitions   # http://127.0.0.1:3000
```

(`make dagster` for the repo's lakehouse.) The same runs are in the instance:""",
    ),
    (
        "code",
        """with dg.DagsterInstance.get() as instance:
    for run in reversed(instance.get_runs()):
        print(f"{run.job_name}: {run.status.value}, tags {sorted(run.tags)}")
con.close()""",
    ),
]
