"""The feature dashboards in the lake: ``features_record`` turns every card of a real (tiny,
random) model's dashboards into the tables ``feature_stats``, ``feature_examples`` and
``feature_logits`` and circuit-tracer's feature files; ``read_card`` and ``labels`` read them
back with a person's label first; the views work on a fresh lake; the ``feature_corpus`` and
``feature_explainer`` settings."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from ct_lake import features
from ct_lake.catalog import connect
from ct_lake.config import ConfigError, load_config, resolve_explainer
from ct_lake.keys import prompt_key
from ct_lake.lake import Lake
from ct_lake.records import feature_tables, features_record, store

MODEL = "tiny"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dashboards(tiny_lakehouse_files):
    """The dashboards of a 2-layer model with 128 random transcoder features per layer, on
    600 tokens of its corpus file."""
    from ct_engine import ReplacementModel
    from ct_engine.features import build_dashboards, read_texts

    root = tiny_lakehouse_files
    model = ReplacementModel.from_pretrained(str(root / "model"), str(root / "plt"))
    return build_dashboards(
        model, read_texts(root / "corpus.txt"), max_tokens=600, window=16, progress=False
    )


@pytest.fixture(scope="module")
def stored(dashboards, tmp_path_factory):
    """``(lake, record)``: the dashboards stored in a fresh lake."""
    lake = Lake(tmp_path_factory.mktemp("features-lake") / "lake")
    scratch = tmp_path_factory.mktemp("features-scratch")
    record = features_record({"model": MODEL}, dashboards, scratch / "features")
    store(lake, record)
    return lake, record


def _close(a, b) -> bool:
    """Equal, floats to float32 precision (the tables' type), recursively."""
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return a == b


def test_every_card_round_trips_through_the_three_tables(dashboards, stored):
    lake, record = stored
    assert [t.name for t in record.tables] == [
        "feature_examples",
        "feature_logits",
        "feature_stats",
    ]
    for out in record.tables:  # what was written is what reads back
        assert lake.read_table(out.name, model=MODEL).equals(out.rows)
    cards = list(dashboards.cards())
    stats = lake.read_table("feature_stats", model=MODEL)
    assert stats.num_rows == len(cards) == 2 * 128
    examples = lake.read_table("feature_examples", model=MODEL)
    assert examples.num_rows == sum(len(g.examples) for c in cards for g in c.groups) > 0
    logits = lake.read_table("feature_logits", model=MODEL)
    assert logits.num_rows == sum(len(c.top_logits) + len(c.bottom_logits) for c in cards)
    con = connect(lake)
    for card in cards:
        read = features.read_card(lake, MODEL, card.layer, card.feature, con=con)
        assert _close(read, json.loads(json.dumps(card.to_dict()))), (card.layer, card.feature)
    # the dashboards' own labels, sources included, as labels() gives them
    expected = {(c.layer, c.feature): (c.label, c.label_source) for c in cards if c.label}
    assert features.labels(lake, MODEL, con=con) == expected and expected


def test_the_tables_come_from_one_pass_over_the_cards(dashboards, stored):
    """The record makes the cards once, for the files and the tables: the same tables as a
    pass of its own."""
    _, record = stored
    names = ("feature_stats", "feature_examples", "feature_logits")
    alone = dict(zip(names, feature_tables(dashboards), strict=True))
    for out in record.tables:
        volatile = ["created_at"] if out.name == "feature_stats" else []
        assert out.rows.drop_columns(volatile).equals(alone[out.name].drop_columns(volatile))


def test_the_feature_files_are_stored_with_the_tables(dashboards, stored):
    from ct_engine.features.files import FeatureFiles

    lake, record = stored
    folder = features.feature_files(lake, MODEL)
    assert folder == lake.root / "files" / "features" / f"model={MODEL}" / "features"
    files = FeatureFiles(folder)
    assert files.n_layers == 2 and files.d_transcoder(1) == 128
    for layer, feature in [(0, 0), (1, 77)]:
        card, expected = files.card(layer, feature), dashboards.card(layer, feature)
        assert (card.n_active, card.label) == (expected.n_active, expected.label)
    assert features.feature_files(lake, "other-model") is None
    facts = record.facts
    assert facts["features"] == 256 and facts["corpus_tokens"] == dashboards.n_tokens
    assert facts["dead_features"] == int((dashboards.n_active == 0).sum())
    sources = dashboards.label_sources.ravel().tolist()
    assert facts["labelled"] == {s: sources.count(s) for s in set(sources) if s}


def test_reading_a_feature_that_is_not_there_gives_none(stored, tmp_path):
    lake, _ = stored
    assert features.read_card(lake, MODEL, 0, 128) is None  # past the layer's features
    assert features.read_card(lake, "other-model", 0, 0) is None
    fresh = Lake(tmp_path / "fresh")  # no table written yet: the views are empty, not errors
    assert features.read_card(fresh, MODEL, 0, 0) is None and features.labels(fresh, MODEL) == {}
    con = connect(fresh)
    assert con.execute("SELECT count(*) FROM feature_cards").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM feature_human_labels").fetchone()[0] == 0


def _annotation(i: int, kind: str, node_ids: list[str], text: str, when: datetime) -> dict:
    return {
        "id": f"{i:032x}",
        "author": "ada",
        "created_at": when,
        "kind": kind,
        "node_ids": node_ids,
        "text": text,
    }


def test_a_persons_latest_label_on_a_feature_node_wins(dashboards, stored):
    lake, _ = stored
    prompts = [prompt_key("the capital of Texas is"), prompt_key("Mira lives in")]
    for prompt in prompts:
        lake.write_table("graphs", [{"model_name": MODEL}], model=MODEL, prompt=prompt)
    card = next(c for c in dashboards.cards(1) if c.label_source == "auto")
    node = f"1_{card.feature}"
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    first = [
        _annotation(1, "label", [f"{node}_2"], "first guess", t0),
        _annotation(2, "note", [f"{node}_3"], "a note is not a label", t0 + timedelta(hours=3)),
        _annotation(3, "label", ["E_26_0"], "a token node", t0 + timedelta(hours=3)),
        _annotation(4, "label", ["0_5_1"], "layer 0, feature 5", t0),
        _annotation(5, "label", ["1_200_1"], "beyond the dashboards", t0),
    ]
    later = [_annotation(6, "label", [f"{node}_4"], "Texas cities", t0 + timedelta(hours=1))]
    lake.write_table("annotations", first, graph=f"{MODEL}__{prompts[0]}")
    lake.write_table("annotations", later, graph=f"{MODEL}__{prompts[1]}")
    # a graph file outside the lake has no model: its labels name no lake feature
    stray = [_annotation(7, "label", [f"{node}_1"], "from a file", t0 + timedelta(hours=9))]
    lake.write_table("annotations", stray, graph="file__mosho")

    con = connect(lake)
    human = con.execute(
        "SELECT layer, feature, label FROM feature_human_labels WHERE model = ? ORDER BY ALL",
        [MODEL],
    ).fetchall()
    assert human == [
        (0, 5, "layer 0, feature 5"),
        (1, card.feature, "Texas cities"),
        (1, 200, "beyond the dashboards"),
    ]
    row = con.execute(
        "SELECT label, label_source, dashboard_label, dashboard_label_source FROM feature_cards "
        "WHERE model = ? AND layer = 1 AND feature = ?",
        [MODEL, card.feature],
    ).fetchone()
    assert row == ("Texas cities", "human", card.label, "auto")
    read = features.read_card(lake, MODEL, 1, card.feature, con=con)
    assert (read["label"], read["label_source"]) == ("Texas cities", "human")
    found = features.labels(lake, MODEL, con=con)
    assert found[(1, card.feature)] == ("Texas cities", "human")
    assert found[(0, 5)] == ("layer 0, feature 5", "human")
    assert found[(1, 200)] == ("beyond the dashboards", "human")  # no dashboards row for it
    untouched = next(c for c in dashboards.cards(1) if c.label and c.feature != card.feature)
    assert found[(1, untouched.feature)] == (untouched.label, untouched.label_source)


# -- settings ------------------------------------------------------------------------------


def _config(tmp_path: Path, **top) -> Path:
    raw = {"lake": "lake", "models": [{"name": "m", "model": "org/m", "transcoders": "org/t"}]}
    raw.update(top)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_feature_corpus_defaults_overrides_and_paths(tmp_path):
    config = load_config(_config(tmp_path))
    settings = config.feature_corpus_for("m")
    assert (settings.path, settings.tokens, settings.field, settings.options()) == (
        None,
        200_000,
        "text",
        {},
    )
    assert config.feature_explainer_for("m") is None
    path = _config(
        tmp_path,
        feature_corpus={"path": "data/corpus.jsonl", "tokens": 5000, "field": "body"},
        feature_explainer="mypackage.labels:explain",
        models=[
            {"name": "m", "model": "org/m", "transcoders": "org/t"},
            {
                "name": "n",
                "model": "org/n",
                "transcoders": "org/t",
                "feature_corpus": {"tokens": 700, "window": 32},
                "feature_explainer": "other:label",
            },
            {
                "name": "p",
                "model": "org/p",
                "transcoders": "org/t",
                "feature_corpus": {"path": "pkg:ct_engine/toyworld/artifacts/model/corpus.txt"},
            },
        ],
    )
    config = load_config(path)
    m, n, p = (config.feature_corpus_for(name) for name in "mnp")
    assert (m.path, m.tokens, m.field) == (str(tmp_path / "data" / "corpus.jsonl"), 5000, "body")
    # an entry's own keys replace those keys only
    assert (n.path, n.tokens, n.field, n.options()) == (m.path, 700, "body", {"window": 32})
    assert Path(p.path) == REPO / "ct_engine" / "toyworld" / "artifacts" / "model" / "corpus.txt"
    assert (p.tokens, p.field) == (5000, "body")
    assert config.feature_explainer_for("m") == "mypackage.labels:explain"
    assert config.feature_explainer_for("n") == "other:label"


_ENTRY = {"name": "m", "model": "org/m", "transcoders": "org/t"}


@pytest.mark.parametrize(
    "top, message",
    [
        (
            {"feature_corpus": {"tokns": 5}},
            "feature_corpus.tokns: unknown key (did you mean 'tokens'?)",
        ),
        (
            {"feature_corpus": {"tokens": 0}},
            "feature_corpus.tokens: Input should be greater than or equal to 1",
        ),
        (
            {"feature_corpus": {"path": ""}},
            "feature_corpus.path: String should have at least 1 character",
        ),
        (
            {"feature_explainer": "not a function"},
            "feature_explainer: 'not a function' is not 'module:function' "
            "(e.g. mypackage.labels:explain)",
        ),
        (
            {"models": [{**_ENTRY, "feature_corpus": {"windw": 8}}]},
            "models[0].feature_corpus.windw: unknown key (did you mean 'window'?)",
        ),
    ],
)
def test_a_bad_feature_setting_is_one_line(tmp_path, top, message):
    with pytest.raises(ConfigError) as err:
        load_config(_config(tmp_path, **top))
    assert str(err.value) == f"{tmp_path / 'c.yaml'}: {message}"


def test_the_explainer_is_resolved_when_used(tmp_path):
    assert resolve_explainer(None) is None
    assert resolve_explainer("json:dumps") is json.dumps
    with pytest.raises(ValueError, match=r"^feature_explainer 'no_such_xyz:f': cannot import"):
        resolve_explainer("no_such_xyz:f")
    with pytest.raises(ValueError, match=r"^feature_explainer 'json:nope': json has no callable"):
        resolve_explainer("json:nope")
    # a missing corpus file is the dashboards' concern, where the file is read (a config
    # shared by machines that do not all hold the corpus still loads)
    config = load_config(_config(tmp_path, feature_corpus={"path": "missing.txt"}))
    assert config.feature_corpus_for("m").path == str(tmp_path / "missing.txt")


def test_loading_a_config_with_a_feature_corpus_imports_no_torch(tmp_path):
    path = _config(tmp_path, feature_corpus={"path": "corpus.txt", "tokens": 10})
    script = (
        "import sys; from ct_lake.config import load_config; "
        f"c = load_config({str(path)!r}); "
        "print(c.feature_corpus_for('m').tokens, 'torch' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.stdout.split() == ["10", "False"], done.stderr
