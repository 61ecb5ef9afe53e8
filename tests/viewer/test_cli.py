"""``ct serve`` and the defaults of :func:`ct_viewer.serve` (no lake needed)."""

from __future__ import annotations

import inspect

import pytest

from ct_cli.main import main
from ct_viewer import serve
from ct_viewer.server import make_server


def test_ct_serve_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--host", "--port", "--config", "--graph_file_dir", "127.0.0.1"):
        assert flag in out


def test_serve_defaults_to_loopback():
    params = inspect.signature(serve).parameters
    assert params["host"].default == "127.0.0.1" and params["port"].default == 8041
    assert inspect.signature(make_server).parameters["host"].default == "127.0.0.1"


def test_ct_serve_runs_the_viewer_on_loopback(tmp_path, monkeypatch, capsys):
    served = {}

    def fake_serve(app, host, port):
        served.update(app=app, host=host, port=port)

    monkeypatch.setattr("ct_viewer.server.serve", fake_serve)
    monkeypatch.delenv("CT_CONFIG", raising=False)
    missing_config = ["--config", str(tmp_path / "none.yaml")]
    assert main(["serve", *missing_config]) == 2
    assert "no lakehouse config" in capsys.readouterr().err
    files = tmp_path / "files"
    files.mkdir()
    (files / "g.json").write_text('{"metadata": {}, "nodes": [], "links": []}')
    (tmp_path / "c.yaml").write_text("lake: lake\nmodels: []\n")
    config = ["--config", str(tmp_path / "c.yaml")]
    assert main(["serve", *config, "--graph_file_dir", str(files), "--port", "8099"]) == 0
    assert served["host"] == "127.0.0.1" and served["port"] == 8099
    from starlette.testclient import TestClient

    with TestClient(served["app"]) as client:
        assert [g["id"] for g in client.get("/api/graphs").json()["graphs"]] == ["file__g"]
        note = {"author": "a", "kind": "note", "node_ids": [], "text": "t"}
        assert client.post("/api/graphs/file__g/annotations", json=note).status_code == 201
        assert client.post("/api/graphs/file__g/steer", json={}).status_code == 409
        assert client.get("/api/graphs/tiny__p_000000000000").status_code == 404
    from ct_lake.lake import Lake

    (row,) = Lake(tmp_path / "lake").read_table("annotations", graph="file__g").to_pylist()
    assert (row["kind"], row["text"]) == ("note", "t")
    assert main(["serve", "--graph_file_dir", str(tmp_path / "nope")]) == 2


def test_file_graphs_never_leave_their_folder(tmp_path):
    from starlette.testclient import TestClient

    from ct_viewer import create_app

    files, outside = tmp_path / "files", tmp_path / "secret.json"
    files.mkdir()
    outside.write_text('{"metadata": {"prompt": "secret"}, "nodes": [], "links": []}')
    (files / "leak.json").symlink_to(outside)
    (files / "ok.json").write_text('{"metadata": {"prompt": "fine"}, "nodes": [], "links": []}')
    with TestClient(create_app(lake_root=None, graph_file_dirs=[files])) as client:
        assert [g["id"] for g in client.get("/api/graphs").json()["graphs"]] == ["file__ok"]
        response = client.get("/api/graphs/file__leak")
        assert response.status_code == 404 and b"secret" not in response.content
        assert client.get("/api/graphs/file__secret").status_code == 404
        assert client.get("/api/graphs/file__ok/annotations").json() == {"annotations": []}
        note = {"author": "a", "kind": "note", "node_ids": [], "text": "t"}
        assert client.post("/api/graphs/file__ok/annotations", json=note).status_code == 409


def test_annotation_writes_from_two_processes_are_not_lost(tmp_path):
    """Read-modify-write under the process lock and the fcntl lock: another process and
    several threads of this one add annotations to one graph at the same time."""
    import subprocess
    import sys
    import threading
    from pathlib import Path

    from ct_lake.lake import Lake
    from ct_viewer.annotations import AnnotationStore

    lake = tmp_path / "lake"
    note = {"author": "a", "kind": "note", "node_ids": [], "text": "t"}
    script = (
        "import sys; from ct_lake.lake import Lake; "
        "from ct_viewer.annotations import AnnotationStore; "
        "s = AnnotationStore(Lake(sys.argv[1])); "
        "[s.add('g1', dict(author='other', kind='note', node_ids=[], text=str(i))) "
        "for i in range(30)]"
    )
    repo = Path(__file__).resolve().parents[2]
    other = subprocess.Popen([sys.executable, "-c", script, str(lake)], cwd=repo)
    store = AnnotationStore(Lake(lake))

    added = []

    def add_some():  # until the other process is done, so that the writers overlap
        n = 0
        while n < 10 or (other.poll() is None and n < 2000):
            store.add("g1", note)
            n += 1
        added.append(n)

    threads = [threading.Thread(target=add_some) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert other.wait(timeout=120) == 0
    rows = store.list("g1")
    assert len(rows) == sum(added) + 30 and sum(r["author"] == "other" for r in rows) == 30
    assert len({r["id"] for r in rows}) == len(rows)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ct_start_server_serves_a_folder_of_graph_files(tmp_path):
    """circuit-tracer's ``start-server``: a real server process on a free port."""
    import json
    import os
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    files = tmp_path / "files"
    files.mkdir()
    (files / "g.json").write_text('{"metadata": {"prompt": "hi"}, "nodes": [], "links": []}')
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("CT_CONFIG", "CT_LAKE")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    argv = ["start-server", "--graph_file_dir", str(files), "--port", str(port)]
    server = subprocess.Popen(
        [sys.executable, "-m", "ct_cli.main", *argv],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(300):  # up to 30 s for the interpreter and the app to start
            try:
                with urllib.request.urlopen(url, timeout=2) as page:
                    index = page.read().decode()
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(0.1)
        else:
            pytest.fail("ct start-server did not answer")
        assert "<title>ct viewer</title>" in index
        with urllib.request.urlopen(url + "api/graphs", timeout=5) as listing:
            graphs = json.load(listing)["graphs"]
        assert [(g["id"], g["prompt_text"]) for g in graphs] == [("file__g", "hi")]
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=30)
    assert f"open http://127.0.0.1:{port}/" in out


def test_ct_start_server_arguments(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no lakehouse config here: the packaged default's lake
    monkeypatch.delenv("CT_CONFIG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["start-server", "--help"])
    assert exit_info.value.code == 0
    page = " ".join(capsys.readouterr().out.split())
    for flag in ("--graph_file_dir DIR", "--features_dir DIR", "--port PORT port (default: 8041)"):
        assert flag in page
    with pytest.raises(SystemExit):
        main(["start-server"])  # the folder is required
    assert "--graph_file_dir" in capsys.readouterr().err
    assert main(["start-server", "--graph_file_dir", str(tmp_path / "nope")]) == 2
    assert f"no folder {tmp_path / 'nope'}" in capsys.readouterr().err
    bad_features = ["--features_dir", str(tmp_path / "none")]
    assert main(["start-server", "--graph_file_dir", str(tmp_path), *bad_features]) == 2
    (err,) = capsys.readouterr().err.splitlines()
    assert "error" in err and "none" in err


def test_ct_start_server_help_imports_no_torch(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import sys\nfrom ct_cli.main import main\ntry:\n    main(['start-server', '--help'])\n"
        "except SystemExit:\n    pass\nprint(sorted({'torch', 'transformers'} & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.splitlines()[-1] == "[]", done.stderr
