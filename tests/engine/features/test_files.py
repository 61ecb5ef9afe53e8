"""circuit-tracer's feature files (:mod:`ct_engine.features.files`): written from a real
toy-world :class:`FeatureDashboards`, read back by an independent reader that does what
circuit-tracer's browser code does, and rejected with one clear line when malformed."""

from __future__ import annotations

import gzip
import json
import math
import re
import struct
import zlib
from pathlib import Path

import pytest

from ct_engine.features.cards import Example, ExampleGroup, FeatureCard
from ct_engine.features.files import (
    FeatureFiles,
    default_features_dir,
    read_index,
    read_record,
    write_cards,
    write_feature_files,
)

LAYERS, FEATURES = 4, 1024  # the toy world's PLT set


@pytest.fixture(scope="module")
def dashboards():
    from ct_engine import ReplacementModel
    from ct_engine.features import build_dashboards, toy_world_texts

    model = ReplacementModel.from_pretrained("toy-world", "toy-world-plt")
    return build_dashboards(model, toy_world_texts(), max_tokens=3000, window=32, progress=False)


@pytest.fixture(scope="module")
def folder(dashboards, tmp_path_factory) -> Path:
    return write_feature_files(dashboards, tmp_path_factory.mktemp("features") / "toy")


# -- an independent reader: only gzip, zlib, struct and json, as the browser reads ----------


def browser_index(folder: Path) -> list[dict]:
    """``fetch("features/index.json.gz")``, gunzipped and parsed."""
    return json.loads(gzip.decompress((folder / "index.json.gz").read_bytes()))


class Server:
    """A static file server's answer to ``Range: bytes=a-b`` (inclusive end, clamped to the
    file): ``(206, body)``. Files are read once."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.files = folder, {}

    def get(self, name: str, header: str) -> tuple[int, bytes]:
        start, end = map(int, re.fullmatch(r"bytes=(\d+)-(\d+)", header).groups())
        if name not in self.files:
            self.files[name] = (self.folder / name).read_bytes()
        data = self.files[name]
        return 206, data[start : min(end, len(data) - 1) + 1]


def browser_record(server: Server, index: list[dict], layer: int, feature: int) -> dict:
    """circuit-tracer's frontend: the index's offsets, a Range request with
    ``bytes=offsets[f]-offsets[f+1]`` (one byte more than the record), then the 4-byte
    little-endian length and that many bytes of zlib-compressed JSON."""
    entry = index[layer]
    offsets = entry["offsets"]
    status, body = server.get(entry["filename"], f"bytes={offsets[feature]}-{offsets[feature + 1]}")
    assert status == 206
    (length,) = struct.unpack("<I", body[:4])
    return json.loads(zlib.decompress(body[4 : 4 + length]).decode("utf-8"))


def four_digits(value):
    """The precision the files promise: 4 significant digits, no NaN."""
    if isinstance(value, float):
        return float(f"{value:.4g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: four_digits(v) for k, v in value.items()}
    if isinstance(value, list):
        return [four_digits(v) for v in value]
    return value


# -- the layout -----------------------------------------------------------------------------


def test_the_folder_has_circuit_tracers_layout(folder):
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(
        ["index.json.gz", "ct_features.json"] + [f"layer_{i}.bin" for i in range(LAYERS)]
    )
    index = browser_index(folder)
    assert len(index) == LAYERS
    for layer, entry in enumerate(index):
        assert entry["filename"] == f"layer_{layer}.bin"
        offsets = entry["offsets"]
        assert len(offsets) == FEATURES + 1 and offsets[0] == 0
        assert all(b - a > 4 for a, b in zip(offsets, offsets[1:], strict=False))
        assert offsets[-1] == (folder / entry["filename"]).stat().st_size
    # No temporary sibling is left behind.
    assert sorted(p.name for p in folder.parent.iterdir()) == ["toy"]


def test_every_record_is_the_cards_circuit_tracer_record(dashboards, folder):
    server, index = Server(folder), browser_index(folder)
    for layer in range(LAYERS):
        for feature in range(FEATURES):
            card = dashboards.card(layer, feature)
            record = browser_record(server, index, layer, feature)
            extras = record.pop("ct")
            assert record == four_digits(card.to_circuit_tracer()), (layer, feature)
            assert extras["label"] == card.label and extras["n_active"] == card.n_active


def test_the_manifest(dashboards, folder):
    manifest = json.loads((folder / "ct_features.json").read_text())
    assert manifest["format"] == "ct-features" and manifest["format_version"] == 1
    assert manifest["model"] == "toy-world" == dashboards.model_name
    assert manifest["transcoder_id"] == dashboards.transcoder_id
    assert (manifest["n_layers"], manifest["d_transcoder"]) == (LAYERS, FEATURES)
    assert manifest["n_tokens"] == dashboards.n_tokens == 3000
    files = FeatureFiles(folder)
    assert (files.n_layers, files.d_transcoder(3), files.model_name) == (4, 1024, "toy-world")
    assert files.n_tokens == 3000 and files.corpus == dashboards.corpus


def assert_close(read, expected, where):
    """Equal, floats to the 4 significant digits the files keep."""
    if isinstance(expected, float):
        assert read == pytest.approx(expected, rel=6e-4, abs=1e-12), where
    elif isinstance(expected, list | tuple):
        assert len(read) == len(expected), where
        for r, e in zip(read, expected, strict=True):
            assert_close(r, e, where)
    elif isinstance(expected, dict):
        assert read.keys() == expected.keys(), where
        for key in expected:
            assert_close(read[key], expected[key], (where, key))
    else:
        assert read == expected, where


def test_the_cards_read_back_whole(dashboards, folder):
    """FeatureFiles.card gives back every field of the card, labels and counts included."""
    files = FeatureFiles(folder)
    for layer in range(LAYERS):
        for feature in range(0, FEATURES, 7):
            read, card = files.card(layer, feature), dashboards.card(layer, feature)
            assert read.frequency == card.frequency  # exact: from the counts
            assert_close(read.to_dict(), card.to_dict(), (layer, feature))
    fired = next(c for c in dashboards.cards(1) if c.n_active > 0)
    assert files.card(1, fired.feature).top_examples[0].tokens == fired.top_examples[0].tokens
    assert read_record(folder, 2, 9) == files.record(2, 9)


def test_rewriting_replaces_the_folder(tmp_path):
    """A second write replaces the first whole (a layer the new set lacks is gone)."""
    target = tmp_path / "set"
    write_cards({0: [_card(0, 0, 1.5)], 1: [_card(1, 0, 2.0)]}, target, 1)
    assert (target / "layer_1.bin").exists()
    write_cards({0: [_card(0, 0, 0.25)]}, target, 1, manifest={"model": "m"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]
    assert not (target / "layer_1.bin").exists()
    files = FeatureFiles(target)
    assert (files.n_layers, files.model_name) == (1, "m")
    assert files.card(0, 0).act_max == 0.25 and files.card(0, 0).label == "label 0/0"


def test_cards_must_come_complete_and_in_order(tmp_path):
    with pytest.raises(ValueError, match=r"^cards out of order: expected layer 0 feature 1"):
        write_cards({0: [_card(0, 0, 1.0), _card(0, 2, 1.0)]}, tmp_path / "a", 3)
    with pytest.raises(ValueError, match=r"^layer 0 has 1 cards, expected 2$"):
        write_cards({0: [_card(0, 0, 1.0)]}, tmp_path / "b", 2)
    with pytest.raises(ValueError, match=r"^feature files need layers 0..L-1, got \[1\]$"):
        write_cards({1: [_card(1, 0, 1.0)]}, tmp_path / "c", 1)
    assert list(tmp_path.iterdir()) == []  # nothing half-written stays


def _card(layer: int, feature: int, act: float) -> FeatureCard:
    example = Example(tokens=["a", " b", "\n"], acts=[0.0, act, act / 3], max_pos=1, max_act=act)
    return FeatureCard(
        layer=layer,
        feature=feature,
        transcoder_id="set",
        n_tokens=100,
        n_active=2,
        frequency=0.02,
        act_min=act / 3,
        act_max=act,
        act_mean=2 * act / 3,
        quantile_levels=[0.0, 0.5, 1.0],
        quantile_values=[act / 3, act / 2, act],
        histogram_edges=[act / 3, act / 2, act],
        histogram_counts=[1, 1],
        groups=[ExampleGroup("Top activations", [example])],
        top_logits=[("x", 1.25)],
        bottom_logits=[("y", -0.5)],
        top_tokens=[(" b", 2)],
        label=f"label {layer}/{feature}",
        label_source="human",
    )


def test_a_folder_written_by_circuit_tracer_reads(tmp_path):
    """Records without our extras and a folder without our manifest: the card has
    circuit-tracer's fields."""
    records = [_card(0, f, 1.0 + f).to_circuit_tracer() for f in range(3)]
    blobs = []
    for record in records:
        payload = zlib.compress(json.dumps(record).encode())
        blobs.append(struct.pack("<I", len(payload)) + payload)
    offsets = [0]
    for blob in blobs:
        offsets.append(offsets[-1] + len(blob))
    (tmp_path / "layer_0.bin").write_bytes(b"".join(blobs))
    index = [{"filename": "layer_0.bin", "offsets": offsets}]
    (tmp_path / "index.json.gz").write_bytes(gzip.compress(json.dumps(index).encode()))
    files = FeatureFiles(tmp_path)
    assert files.manifest == {} and files.d_transcoder(0) == 3
    card = files.card(0, 2)
    assert card.to_circuit_tracer() == records[2]
    assert card.label == "" and math.isnan(card.top_logits[0][1])


# -- malformed folders: one line naming the file ---------------------------------------------


def _copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    target.mkdir()
    for path in folder.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def _error(directory: Path, layer: int = 0, feature: int = 0) -> str:
    with pytest.raises(ValueError) as caught:
        FeatureFiles(directory).card(layer, feature)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_bad_folders_give_one_line(folder, tmp_path):
    assert _error(tmp_path / "nowhere") == f"features folder {tmp_path / 'nowhere'}: no such folder"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _error(empty) == (
        f"{empty / 'index.json.gz'}: missing (not a circuit-tracer features folder)"
    )
    bad = _copy(folder, tmp_path)
    index_path = bad / "index.json.gz"
    good_index = index_path.read_bytes()

    index_path.write_bytes(b"not gzip")
    assert _error(bad).startswith(f"{index_path}: not gzip-compressed JSON (")
    index_path.write_bytes(gzip.compress(b"{not json"))
    assert _error(bad).startswith(f"{index_path}: not gzip-compressed JSON (")
    index_path.write_bytes(gzip.compress(b'{"layers": 4}'))
    assert _error(bad) == f"{index_path}: expected a non-empty JSON array (one entry per layer)"
    index = json.loads(gzip.decompress(good_index))
    index[1]["offsets"][0] = 3
    index_path.write_bytes(gzip.compress(json.dumps(index).encode()))
    assert _error(bad) == f"{index_path}: layer 1: offsets start at 3, not 0"
    index = json.loads(gzip.decompress(good_index))
    index[0]["filename"] = "../layer_0.bin"
    index_path.write_bytes(gzip.compress(json.dumps(index).encode()))
    assert "is not a plain file name" in _error(bad)
    index_path.write_bytes(good_index)

    bin_path = bad / "layer_2.bin"
    data = bin_path.read_bytes()
    bin_path.write_bytes(data[:-10])
    assert _error(bad) == (
        f"{bin_path}: {len(data) - 10} bytes, but index.json.gz's offsets for layer 2 "
        f"end at {len(data)}"
    )
    bin_path.unlink()
    assert _error(bad) == f"{bin_path}: missing (named by index.json.gz for layer 2)"
    bin_path.write_bytes(data)

    offsets = json.loads(gzip.decompress(good_index))[2]["offsets"]
    start, end = offsets[5], offsets[6]
    wrong_length = bytearray(data)
    wrong_length[start : start + 4] = struct.pack("<I", end - start)
    bin_path.write_bytes(bytes(wrong_length))
    assert _error(bad, 2, 5) == (
        f"{bin_path}: feature 5 (bytes {start}..{end}): length prefix says {end - start} "
        f"bytes, the index gives {end - start - 4}"
    )
    not_zlib = bytearray(data)
    not_zlib[start + 4 : start + 8] = b"\xff\xff\xff\xff"
    bin_path.write_bytes(bytes(not_zlib))
    assert _error(bad, 2, 5).startswith(
        f"{bin_path}: feature 5 (bytes {start}..{end}): not zlib-compressed JSON ("
    )
    assert FeatureFiles(bad).card(2, 4).feature == 4  # its neighbours still read

    (bad / "ct_features.json").write_text('{"format": "ct-features", "format_version": 99}')
    assert _error(bad) == (f"{bad / 'ct_features.json'}: format version 99; this ct reads up to 1")


def test_out_of_range_features(folder):
    files = FeatureFiles(folder)
    with pytest.raises(ValueError, match=rf"^layer 4 is out of range: {folder} has layers 0..3$"):
        files.card(4, 0)
    with pytest.raises(ValueError, match=r"^feature 1024 is out of range: layer 0 has features "):
        files.record(0, 1024)
    with pytest.raises(ValueError, match=r"^feature -1 is out of range"):
        read_record(folder, 0, -1)
    assert len(read_index(folder)) == 4


def test_default_features_dir(tmp_path):
    assert default_features_dir("toy-world-plt") == Path("features/toy-world-plt")
    assert default_features_dir("owner/repo@main") == Path("features/owner_repo_main")
    assert default_features_dir("hf://owner/repo/sub") == Path("features/owner_repo_sub")
    local = tmp_path / "my-transcoders"
    local.mkdir()
    assert default_features_dir(f"{local}/") == Path("features/my-transcoders")
    with pytest.raises(ValueError, match="cannot name a features folder"):
        default_features_dir("//")
