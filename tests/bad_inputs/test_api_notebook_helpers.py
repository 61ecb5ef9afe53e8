"""Bad input to the notebook helpers named after circuit-tracer's: the graph-URL reader
(``ct_engine.utils.demo_utils``) and the notebook server (``ct_viewer.local_server.serve``)."""

from __future__ import annotations

import socket

import pytest

from tests.bad_inputs.harness import Api, check_api, ids


def _decode(url: str):
    from ct_engine.utils.demo_utils import decode_url_features

    return decode_url_features(url)


def _serve(data_dir, **kwargs):
    from ct_viewer.local_server import serve

    return serve(data_dir, **kwargs)


def _serve_on_a_taken_port(tmp):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        _serve(tmp, port=taken.getsockname()[1])


CASES = [
    Api(
        "url-node-id-not-numbers",
        lambda tmp: _decode("https://x.org/g?pinnedIds=3_feat_2"),
        ValueError,
        r"not a graph node id: '3_feat_2'",
    ),
    Api(
        "url-supernodes-not-json",
        lambda tmp: _decode("https://x.org/g?supernodes=%5B%5B%22a%22"),
        ValueError,
        r"supernodes parameter is not JSON",
    ),
    Api(
        "serve-data-dir-missing",
        lambda tmp: _serve(tmp / "no-such-folder"),
        ValueError,
        r"data_dir '.*no-such-folder' is not a folder of graph files",
    ),
    Api("serve-port-taken", _serve_on_a_taken_port, OSError, r"could not serve on 127\.0\.0\.1:"),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_bad_input(case, tmp_path):
    check_api(case, tmp_path)
