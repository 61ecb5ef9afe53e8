"""Bad input to the engine's commands (``ct attribute``, ``ct intervene``, ``ct demo``): one
line each.

Mistakes that can be seen before the model loads are given with a model that does not exist
(``-m no-such/model``): had the command loaded it first, its error would name the model, not
the mistake; and the whole run must stay fast. The rest use the toy world.
"""

from __future__ import annotations

import socket

import pytest

from tests.bad_inputs.harness import Cli, check_cli, ids

P = "'The capital of the country where Mosho lives is'"
# Checked before any model loads: this model name would fail if it were loaded.
NO_MODEL = f"-p {P} -t {{plt}} -m no-such/model"
ATT = f"attribute {NO_MODEL}"
ATT_TOY = f"attribute -p {P} -t {{plt}} -m {{model}}"
INT = f"intervene {NO_MODEL}"
INT_TOY = f"intervene -p {P} -t {{plt}} -m {{model}}"


def _mkdir(name: str):
    return lambda tmp: (tmp / name).mkdir()


_HELD: list[socket.socket] = []  # ports kept busy until the session ends


def _busy_port(tmp) -> dict[str, int]:
    """``{port}``: a loopback port another server listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    _HELD.append(sock)
    return {"port": sock.getsockname()[1]}


FAST = [
    # -o: the suffix picks the format; the folder must take the file
    Cli(
        "attribute-out-json",
        f"{ATT} -o {{tmp}}/graph.json",
        r"^ct attribute: error: -o .*graph\.json: the suffix picks the file format; use \.pt "
        r"or \.safetensors \(the viewer's JSON files: --slug with --graph_file_dir\)$",
    ),
    Cli(
        "attribute-out-is-a-folder",
        f"{ATT} -o {{tmp}}/out",
        r"-o .*/out is a folder: give a file name, such as .*/out/graph\.pt$",
        setup=_mkdir("out"),
    ),
    Cli(
        "attribute-out-folder-missing",
        f"{ATT} -o {{tmp}}/nowhere/g.pt",
        r"-o .*/nowhere/g\.pt: the folder .*/nowhere does not exist$",
    ),
    Cli(
        "attribute-out-under-a-file",
        f"{ATT} -o {{tmp}}/f/g.pt",
        r"-o .*/f/g\.pt: .*/f is a file, not a folder$",
        files={"f": "x"},
    ),
    # /sys refuses new files even to root (a chmod'ed folder would not stop root)
    Cli(
        "attribute-out-read-only-folder",
        f"{ATT} -o /sys/g.pt",
        r"-o /sys/g\.pt: cannot create files in /sys: Permission denied$",
    ),
    # --graph_file_dir and --slug
    Cli(
        "graph-file-dir-is-a-file",
        f"{ATT} --slug s --graph_file_dir {{tmp}}/gf",
        r"--graph_file_dir .*/gf is a file, not a folder$",
        files={"gf": "x"},
    ),
    Cli(
        "graph-file-dir-under-a-file",
        f"{ATT} --slug s --graph_file_dir {{tmp}}/gf/sub",
        r"--graph_file_dir .*/gf/sub: .*/gf is a file, not a folder$",
        files={"gf": "x"},
    ),
    Cli(
        "graph-file-dir-read-only",
        f"{ATT} --slug s --graph_file_dir /sys/graphs",
        r"--graph_file_dir /sys/graphs: cannot create files in /sys",
    ),
    Cli(
        "slug-with-a-path",
        f"{ATT} --slug ../evil --graph_file_dir {{tmp}}/gf",
        r"error: slug '\.\./evil' must be 1-128 letters, digits",
    ),
    Cli(
        "slug-json-is-a-folder",
        f"{ATT} --slug s --graph_file_dir {{tmp}}/gf",
        r"--graph_file_dir .*/gf: s\.json is a folder$",
        setup=lambda tmp: (tmp / "gf" / "s.json").mkdir(parents=True),
    ),
    Cli(
        "graph-index-malformed",
        f"{ATT} --slug s --graph_file_dir {{tmp}}/gf",
        r"gf/graph-metadata\.json: cannot read the graph index \(Expecting .*\): fix or remove "
        r"it$",
        files={"gf/graph-metadata.json": '{"graphs": [{"slug": '},
    ),
    Cli(
        "graph-index-not-an-index",
        f"{ATT} --slug s --graph_file_dir {{tmp}}/gf",
        r'gf/graph-metadata\.json: not a graph index \{"graphs": \[\.\.\.\]\}: fix or remove',
        files={"gf/graph-metadata.json": "[1, 2]"},
    ),
    # --server: the viewer's port
    Cli(
        "attribute-server-port-out-of-range",
        f"{ATT} --slug s --graph_file_dir {{tmp}}/gf --server --port 70000",
        r"--port 70000 is not a port number \(1-65535\)$",
    ),
    Cli(
        "attribute-server-port-taken",
        f"{ATT} --slug s --graph_file_dir {{tmp}}/gf --server --port {{port}}",
        r"error: port \d+ on 127\.0\.0\.1 is already in use .*choose a free port with --port$",
        setup=_busy_port,
    ),
    # the numbers
    Cli(
        "node-threshold-above-one",
        f"{ATT} -o {{tmp}}/g.pt --node_threshold 1.5",
        r"--node_threshold 1\.5 is out of range: it is a share of the total influence, "
        r"between 0 and 1$",
    ),
    Cli("edge-threshold-negative", f"{ATT} -o {{tmp}}/g.pt --edge_threshold -0.1", r"-0\.1 is out"),
    Cli("edge-threshold-nan", f"{ATT} -o {{tmp}}/g.pt --edge_threshold nan", r"nan is out of"),
    Cli("batch-size-zero", f"{ATT} -o {{tmp}}/g.pt --batch_size 0", r"--batch_size must be at"),
    Cli("max-n-logits-zero", f"{ATT} -o {{tmp}}/g.pt --max_n_logits 0", r"--max_n_logits must"),
    Cli(
        "target-and-target-diff",
        f"{ATT} -o {{tmp}}/g.pt --target Ludus --target-diff Ludus Rimos",
        r"give either --target or --target-diff, not both$",
    ),
    Cli("attribute-empty-prompt", "attribute -p ' ' -t {plt} -m no-such/model -o g.pt", "empty"),
    # ct intervene: counts and values
    Cli("intervene-top-negative", f"{INT} --top -1 0,5,10=1", r"--top must be at least 1, got -1"),
    Cli("intervene-generate-zero", f"{INT} --generate 0 0,5,10=1", r"--generate must be at least"),
    Cli(
        "intervene-value-overflows-dtype",
        f"{INT} 0,5,10=1e308",
        r"^ct intervene: error: '0,5,10=1e308': the value 1e\+308 overflows the model's dtype "
        r"float32 \(largest 3\.40282e\+38\)$",
    ),
    Cli(
        "intervene-value-overflows-float16",
        f"{INT} --dtype fp16 0,5,10=70000",
        r"the value 70000 overflows the model's dtype float16 \(largest 65504\)$",
    ),
    # the transcoders' folder and config are read before the model loads
    Cli(
        "transcoders-folder-missing",
        f"attribute -p {P} -t {{tmp}}/nowhere -m no-such/model -o {{tmp}}/g.pt",
        r"error: transcoder directory does not exist \(file: .*/nowhere\)$",
    ),
    Cli(
        "transcoders-config-incomplete",
        f"intervene -p {P} -t {{tmp}}/tc -m no-such/model 0,0,0=1",
        r"missing required config key \(file: .*/tc/config\.yaml, key: 'feature_input_hook'\)$",
        files={"tc/config.yaml": "model_kind: transcoder_set\n"},
    ),
    # ct eval-transcoders
    Cli(
        "eval-plot-not-png",
        "eval-transcoders no-such/model {plt} --plot {tmp}/m.pdf",
        r"^ct eval-transcoders: error: --plot .*/m\.pdf: the suffix picks the file format; "
        r"use \.png$",
    ),
    Cli(
        "eval-json-under-a-file",
        "eval-transcoders no-such/model {plt} --json {tmp}/f/out/m.json",
        r"--json .*/f/out/m\.json: .*/f is a file, not a folder$",
        files={"f": "x"},
    ),
    Cli(
        "eval-batch-size-zero",
        "eval-transcoders no-such/model {plt} --batch-size 0",
        r"--batch-size must be positive, got 0$",
    ),
    # ct demo
    Cli(
        "demo-workdir-is-a-file",
        "demo --workdir {tmp}/w",
        r"--workdir .*/w is a file",
        files={"w": ""},
    ),
    Cli("demo-threshold", "demo --workdir {tmp}/w --node_threshold 2", r"--node_threshold 2\.0 is"),
]

# These load the toy world (a few seconds each): the mistake is only visible to its tokenizer
# or its activations.
TOY = [
    Cli(
        "attribute-target-not-in-vocabulary",
        f"{ATT_TOY} -o {{tmp}}/g.pt --target ludus",
        r"^ct attribute: error: --target 'ludus' is not in the model's vocabulary \(it tokenizes "
        r"as \['<unk>'\]\); nearest: 'Ludus'",
    ),
    Cli(
        "attribute-target-diff-not-in-vocabulary",
        f"{ATT_TOY} -o {{tmp}}/g.pt --target-diff Ludus Xyzzyplugh",
        r"--target-diff 'Xyzzyplugh' is not in the model's vocabulary \(it tokenizes as "
        r"\['<unk>'\]\)$",
    ),
    Cli(
        "intervene-relative-value-overflows",
        f"{INT_TOY} '0,1,189=*1e38'",
        r"'0,1,189=\*1e38': the value 4\.99\d*e\+38 overflows the model's dtype float32",
    ),
]


@pytest.mark.parametrize("case", FAST, ids=ids(FAST))
def test_refused_before_the_model_loads(case, tmp_path):
    check_cli(case, tmp_path)


@pytest.mark.parametrize("case", TOY, ids=ids(TOY))
def test_refused_on_the_toy_world(case, tmp_path):
    check_cli(case, tmp_path)
