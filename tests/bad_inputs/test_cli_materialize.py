"""Bad input to the Dagster project's commands (``ct materialize``, ``ct prompts``, ``ct
baseline``): each is refused with one line, before any Dagster run starts."""

from __future__ import annotations

import pytest

from tests.bad_inputs.harness import Cli, check_cli, ids

# A config of the shipped toy world with ``{model}``/``{transcoders}`` replaced per case.
CONFIG = """\
lake: lake
models:
  - name: toy
    model: {model}
    transcoders: {transcoders}
prompt_sets:
  demo: ["The capital of the country where Mosho lives is"]
"""


def config(model: str = "toy-world", transcoders: str = "toy-world-plt") -> dict[str, str]:
    return {"c.yaml": CONFIG.format(model=model, transcoders=transcoders)}


MAT = "materialize --config {tmp}/c.yaml"

CASES = [
    Cli(
        "yaml-unclosed-list",
        MAT,
        r"^ct materialize: error: c\.yaml:3:1: invalid YAML: expected ',' or ']'",
        files={"c.yaml": "lake: lake\nmodels: [unclosed\n"},
    ),
    Cli(
        "yaml-tab-indent",
        MAT,
        r"c\.yaml:2:1: invalid YAML: found character '\\t'",
        files={"c.yaml": "lake: lake\n\tmodels: x\n"},
    ),
    Cli(
        "yaml-two-documents",
        MAT,
        r"c\.yaml:2:1: invalid YAML: expected a single document",
        files={"c.yaml": "lake: lake\n---\nlake: other\n"},
    ),
    Cli(
        "yaml-bad-date",
        MAT,
        r"c\.yaml: invalid YAML: month must be in 1\.\.12$",
        files={"c.yaml": "lake: 2001-13-45\n"},
    ),
    Cli(
        "yaml-too-deep",
        MAT,
        r"c\.yaml: invalid YAML: nested too deeply$",
        files={"c.yaml": "[" * 800},
    ),
    Cli("config-not-utf8", MAT, r"c\.yaml: not UTF-8 text", files={"c.yaml": b"\xff\xfe lake"}),
    Cli(
        "config-is-a-folder",
        MAT,
        r"c\.yaml: cannot read the config: Is a directory",
        setup=lambda tmp: (tmp / "c.yaml").mkdir(),
    ),
    Cli("config-missing", MAT, r"no lakehouse config at .*c\.yaml"),
    Cli(
        "model-folder-missing",
        MAT,
        r"c\.yaml: models\[0\]\.model: model folder /nowhere/model does not exist",
        files=config(model="/nowhere/model"),
    ),
    Cli(
        "model-hub-id-offline",
        MAT,
        r"models\[0\]\.model: model 'nobody/no-such-model' is not in the local caches "
        r"and HF_HUB_OFFLINE is set",
        files=config(model="nobody/no-such-model"),
    ),
    Cli(
        "transcoders-folder-missing",
        MAT,
        r"models\[0\]\.transcoders: transcoder folder /nowhere/plt does not exist",
        files=config(transcoders="/nowhere/plt"),
    ),
    Cli(
        "transcoders-hub-offline",
        MAT,
        r"models\[0\]\.transcoders: transcoders 'nobody/no-such-set' is not in the local caches",
        files=config(transcoders="nobody/no-such-set"),
    ),
    Cli(
        "unknown-model",
        MAT + " --model nope",
        r"unknown model 'nope'.* declares toy",
        files=config(),
    ),
    Cli(
        "unknown-prompt-set",
        MAT + " --prompt-set nope",
        r"unknown prompt sets \['nope'\]",
        files=config(),
    ),
    Cli(
        "prompts-file-missing",
        MAT + " --prompts-file {tmp}/none.txt",
        r"cannot read the prompts file .*none\.txt: No such file",
        files=config(),
    ),
    Cli(
        "partitions-per-run-zero",
        MAT + " --partitions-per-run 0",
        r"--partitions-per-run must be at least 1",
        files=config(),
    ),
    Cli(
        "prompts-add-unknown-model",
        "prompts add 'a b' --model nope --config {tmp}/c.yaml",
        r"unknown model 'nope'",
        files=config(),
    ),
    Cli(
        "baseline-check-unknown-model",
        "baseline check --model nope --config {tmp}/c.yaml",
        r"^ct baseline: error: unknown model 'nope'",
        files=config(),
    ),
    Cli("materialize-blank-prompt", MAT + " --prompt ' '", r"prompt", files=config()),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_cli_materialize(case, tmp_path):
    check_cli(case, tmp_path)
    if case.argv.startswith("materialize"):  # refused before Dagster made its instance
        assert not (tmp_path / "dagster_home").exists()
