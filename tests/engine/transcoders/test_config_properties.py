"""Property-based tests of the transcoder config reader: any ``config.yaml`` text, and any
mapping next to valid weights, either loads or raises one TranscoderFormatError line that names
the file; never another exception."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ct_engine.tiny import build_random_transcoders
from ct_engine.transcoders.errors import TranscoderFormatError
from ct_engine.transcoders.formats.common import CONFIG_FILE, read_config_file
from ct_engine.transcoders.loading import load_directory

# Derandomized and database-free: CI runs the same examples every time. The function-scoped
# fixtures (offline hub, private cache) hold for every example alike.
FAST = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

KEYS = ["model_kind", "feature_input_hook", "feature_output_hook", "activation", "k", "scan"]
KEYS += ["transcoders", "model_name"]
VALID = {
    "model_kind": ["transcoder_set", "cross_layer_transcoder"],
    "feature_input_hook": ["mlp.hook_in", "hook_resid_mid"],
    "feature_output_hook": ["mlp.hook_out"],
    "activation": ["relu", "jump_relu", "topk", "gelu"],
    "k": [1, 4, 0, -1],
    "scan": ["s", ["a", "b"]],
    "transcoders": [["layer_0.safetensors", "layer_1.safetensors"], ["missing.safetensors"]],
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=8),
)
json_like = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def configs(draw) -> dict:
    """A valid config with some keys dropped, replaced by near-valid or arbitrary values."""
    config = {
        "model_kind": "transcoder_set",
        "feature_input_hook": "mlp.hook_in",
        "feature_output_hook": "mlp.hook_out",
    }
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=3, unique=True)):
        choice = draw(st.integers(0, 2))
        if choice == 0:
            config.pop(key, None)
        elif choice == 1 and key in VALID:
            config[key] = draw(st.sampled_from(VALID[key]))
        else:
            config[key] = draw(json_like)
    extra = draw(st.dictionaries(st.text(max_size=6), json_like, max_size=2))
    return {**extra, **config}


def _one_line_format_error(err: BaseException, where: Path) -> None:
    assert isinstance(err, TranscoderFormatError), repr(err)
    message = str(err)
    assert "\n" not in message, message
    assert err.file is not None and Path(err.file).parent in (where, where.parent), message


yaml_like = st.lists(
    st.sampled_from(
        ["model_kind", ":", " ", "\n", "  ", "- ", "[", "]", "{", "}", "'", '"', "&a", "*a", "!!"]
        + ["python/object", "2001-13-45", "1e400", "~", "k", "0x1F", ".inf", "&", "|", "#"]
    ),
    max_size=20,
).map("".join)


@FAST
@given(st.one_of(yaml_like, st.text(max_size=60)))
@example("k: 2001-13-45")
@example("!!python/object/apply:os.system ['echo owned']")
@example("a: &a [*a]")
@example("\x00")
@example("[" * 600)
@example("a: !!int zz")
def test_any_config_text_reads_as_a_mapping_or_one_error_line(tmp_path, text):
    path = tmp_path / CONFIG_FILE
    path.write_text(text, encoding="utf-8")
    try:
        config = read_config_file(path)
    except Exception as err:  # noqa: BLE001 - the property is about the exception's type
        _one_line_format_error(err, tmp_path)
        return
    assert isinstance(config, dict)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return build_random_transcoders(
        tmp_path_factory.mktemp("config-props"),
        n_layers=2,
        d_model=8,
        d_transcoder=16,
        activation="jump_relu",
    )


@FAST
@given(configs())
@example({"model_kind": "transcoder_set", "feature_input_hook": "h", "feature_output_hook": "o",
          "activation": "topk", "k": 2**70})  # fmt: skip
@example({"model_kind": ["transcoder_set"], "feature_input_hook": "h", "feature_output_hook": "o"})
@example({"model_kind": "transcoder_set", "feature_input_hook": "h", "feature_output_hook": "o",
          "activation": ["relu"]})  # fmt: skip
def test_any_config_mapping_loads_or_names_the_file_and_key(weights, config):
    (weights / CONFIG_FILE).write_text(yaml.safe_dump(config), encoding="utf-8")
    try:
        loaded = load_directory(weights)
    except Exception as err:  # noqa: BLE001
        _one_line_format_error(err, weights)
        assert err.key is not None, str(err)
        return
    assert loaded.n_layers == 2
    assert loaded.feature_input_hook == config["feature_input_hook"]
    assert loaded.feature_output_hook == config["feature_output_hook"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "model_kind: [a\nk: 1\n",
            r"^invalid YAML at line 2, column 2: expected .,. or .]., but got .:. \(file: ",
        ),
        ("k: 2001-13-45\n", r"^invalid YAML: month must be in 1\.\.12 \(file: .*config\.yaml\)$"),
        ("[" * 800, r"^invalid YAML: nested too deeply \(file: "),
    ],
)
def test_invalid_yaml_is_one_line_naming_the_place(tmp_path, text, message):
    path = tmp_path / CONFIG_FILE
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TranscoderFormatError, match=message):
        read_config_file(path)


def test_config_bytes_that_are_not_utf8_name_the_file(tmp_path):
    path = tmp_path / CONFIG_FILE
    path.write_bytes(b"model_kind: \xff\n")
    with pytest.raises(TranscoderFormatError, match=r"^invalid YAML: 'utf-8' codec .*config\.yaml"):
        read_config_file(path)
