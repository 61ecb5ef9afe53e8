"""Coverage-guided fuzzing (atheris, libFuzzer) of the readers of files a user is handed.

Targets:

* ``pt``: :func:`ct_engine.graph.pt_exchange.read_pt` on the bytes as a graph ``.pt``.
* ``transcoder``: :func:`ct_engine.transcoders.loading.load_directory` on a one-layer folder
  whose weights file is the bytes after the first; the first byte picks the layout: 0 a listed
  safetensors file (circuit-tracer PLT or GemmaScope-2, recognised by its tensors), 1 a listed
  GemmaScope ``.npz``, 2 a cross-layer ``W_enc_0.safetensors`` next to a valid ``W_dec_0``.

The documented user errors (``ValueError``, which ``TranscoderFormatError`` is, and the ``.pt``
reader's ``UnsafePickleError``) are expected; any other exception is a finding, saved by
libFuzzer as ``crash-<sha1>`` under ``-artifact_prefix``.

Usage::

    python fuzz/fuzz_readers.py pt fuzz/corpus/pt -runs=2000       # libFuzzer flags follow
    python fuzz/fuzz_readers.py transcoder fuzz/corpus/transcoder -max_total_time=60
    python fuzz/fuzz_readers.py make-corpus                        # rewrite fuzz/corpus/

Give a scratch folder before the corpus folder to keep new inputs out of the committed corpus
(libFuzzer writes what it finds into the first folder).
"""

from __future__ import annotations

import sys
import tempfile
import zipfile
from pathlib import Path

import atheris

# Only our own code is instrumented: torch, numpy and safetensors would slow every run and
# their coverage is not what is being explored.
import numpy as np  # noqa: E402,I001
import torch  # noqa: E402
import yaml  # noqa: E402

with atheris.instrument_imports(include=["ct_engine"]):
    from ct_engine.graph._pt_pickle import UnsafePickleError
    from ct_engine.graph.pt_exchange import read_pt
    from ct_engine.transcoders.formats.common import LoadOptions
    from ct_engine.transcoders.loading import load_directory

CORPUS = Path(__file__).resolve().parent / "corpus"
EXPECTED = (ValueError, UnsafePickleError)
D, F = 4, 8
HOOKS = {"feature_input_hook": "mlp.hook_in", "feature_output_hook": "mlp.hook_out"}
# Eager reads: every tensor of the file is read and checked, not only its header.
OPTIONS = LoadOptions(lazy_encoder=False, lazy_decoder=False)

SCRATCH = Path(tempfile.mkdtemp(prefix="ct-fuzz-"))


def _folder(name: str, config: dict) -> Path:
    folder = SCRATCH / name
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def _clt_decoder(folder: Path) -> None:
    from safetensors.torch import save_file

    save_file({"W_dec_0": torch.zeros(F, 1, D)}, str(folder / "W_dec_0.safetensors"))


def _layouts() -> list[tuple[Path, str]]:
    listed = _folder(
        "listed", {"model_kind": "transcoder_set", "transcoders": ["w.safetensors"], **HOOKS}
    )
    npz = _folder("npz", {"model_kind": "transcoder_set", "transcoders": ["w.npz"], **HOOKS})
    clt = _folder("clt", {"model_kind": "cross_layer_transcoder", **HOOKS})
    _clt_decoder(clt)
    return [(listed, "w.safetensors"), (npz, "w.npz"), (clt, "W_enc_0.safetensors")]


_LAYOUTS: list[tuple[Path, str]] = []  # (folder, weights file), picked by the first byte


FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "graph"
_RECORDS: dict[str, bytes] = {}  # the records of a real graph file but its data.pkl


def _wrap_pickle(data: bytes, path: Path) -> None:
    """A torch zip archive with ``data`` as its ``data.pkl`` next to a real graph's storages:
    mutations of a whole archive mostly break its CRCs and never reach the unpickler."""
    if not _RECORDS:
        with zipfile.ZipFile(FIXTURES / "ct_graph.pt") as archive:
            for name in archive.namelist():
                if not name.endswith("/data.pkl"):
                    _RECORDS[name] = archive.read(name)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("ct_graph/data.pkl", data)
        for name, record in _RECORDS.items():
            archive.writestr(name, record)


def fuzz_pt(data: bytes) -> None:
    """A whole ``.pt`` when the bytes start as a zip does, else the ``data.pkl`` of one."""
    path = SCRATCH / "graph.pt"
    if data.startswith(b"PK\x03\x04"):
        path.write_bytes(data)
    else:
        _wrap_pickle(data, path)
    try:
        read_pt(path)
    except EXPECTED:
        pass


def fuzz_transcoder(data: bytes) -> None:
    if not data:
        return
    folder, name = _LAYOUTS[data[0] % len(_LAYOUTS)]
    (folder / name).write_bytes(data[1:])
    try:
        load_directory(folder, OPTIONS)
    except EXPECTED:
        pass


TARGETS = {"pt": fuzz_pt, "transcoder": fuzz_transcoder}


# ---------------------------------------------------------------------------------- corpus


def make_corpus() -> None:
    """Small valid files (a tiny graph, one-layer transcoders of each layout) and damaged ones."""
    from safetensors.torch import save, save_file

    from ct_engine.graph.pt_exchange import write_pt
    from ct_engine.tiny import build_random_transcoders

    for target in TARGETS:  # the inputs runs found (found-*) stay
        (CORPUS / target).mkdir(parents=True, exist_ok=True)
        for old in (CORPUS / target).iterdir():
            if not old.name.startswith("found-"):
                old.unlink()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)

    def seed(target: str, name: str, data: bytes) -> None:
        (CORPUS / target / name).write_bytes(data)

    # pt: circuit-tracer's files of the graph tests (current and legacy layouts), the same
    # graph written by write_pt, and damaged copies.
    fixtures = FIXTURES
    good = (fixtures / "ct_graph.pt").read_bytes()
    seed("pt", "circuit-tracer.pt", good)
    seed("pt", "circuit-tracer-legacy.pt", (fixtures / "ct_graph_legacy.pt").read_bytes())
    write_pt(read_pt(fixtures / "ct_graph.pt"), SCRATCH / "ours.pt")
    seed("pt", "write_pt.pt", (SCRATCH / "ours.pt").read_bytes())
    seed("pt", "truncated.pt", good[: len(good) // 2])
    seed("pt", "no-central-directory.pt", good[: good.rfind(b"PK\x05\x06")])
    seed("pt", "renamed-key.pt", good.replace(b"adjacency_matrix", b"adjacency_matrjx", 1))
    seed("pt", "not-zip.pt", b"PK\x03\x04\x80\x02}q\x00.")
    for name in ("ct_graph", "ct_graph_legacy"):  # pickles alone, wrapped by fuzz_pt
        with zipfile.ZipFile(fixtures / f"{name}.pt") as archive:
            seed("pt", f"pickle-{name}.pkl", archive.read(f"{name}/data.pkl"))
    seed("pt", "encrypted-record.pt", _zip_flags(good, CENTRAL, 0x1))
    seed("pt", "patched-record.pt", _zip_flags(good, CENTRAL, 0x20))

    # transcoder: layout byte + file.
    plt = build_random_transcoders(SCRATCH / "seed-plt", n_layers=1, d_model=D, d_transcoder=F)
    layer = (plt / "layer_0.safetensors").read_bytes()
    seed("transcoder", "plt.bin", b"\x00" + layer)
    seed("transcoder", "plt-truncated.bin", b"\x00" + layer[: len(layer) - 7])
    seed(
        "transcoder", "plt-header-length.bin", b"\x00" + (1 << 40).to_bytes(8, "little") + layer[8:]
    )
    nan = {"W_enc": torch.full((F, D), float("nan")), "b_enc": torch.zeros(F)}
    seed(
        "transcoder",
        "plt-nan.bin",
        b"\x00" + save({**nan, "W_dec": torch.zeros(F, D), "b_dec": torch.zeros(D)}),
    )
    gs2 = {
        "w_enc": torch.randn(D, F),
        "w_dec": torch.randn(F, D),
        "b_enc": torch.zeros(F),
        "b_dec": torch.zeros(D),
        "threshold": torch.rand(F),
    }
    seed("transcoder", "gs2.bin", b"\x00" + save(gs2))
    npz_file = SCRATCH / "seed.npz"
    arrays = {"W_enc": rng.standard_normal((D, F)), "W_dec": rng.standard_normal((F, D))}
    np.savez(npz_file, **arrays, b_enc=np.zeros(F), b_dec=np.zeros(D), threshold=np.ones(F))
    npz = npz_file.read_bytes()
    seed("transcoder", "gemmascope.bin", b"\x01" + npz)
    seed("transcoder", "gemmascope-truncated.bin", b"\x01" + npz[: len(npz) // 2])
    seed("transcoder", "gemmascope-encrypted.bin", b"\x01" + _zip_flags(npz, CENTRAL, 0x1))
    seed("transcoder", "gemmascope-patched.bin", b"\x01" + _zip_flags(npz, CENTRAL, 0x20))
    clt = build_random_transcoders(
        SCRATCH / "seed-clt", n_layers=1, d_model=D, d_transcoder=F, kind="clt"
    )
    seed("transcoder", "clt.bin", b"\x02" + (clt / "W_enc_0.safetensors").read_bytes())
    save_file({"W_enc_0": torch.zeros(2, 2)}, str(SCRATCH / "small.safetensors"))
    seed(
        "transcoder", "clt-wrong-shapes.bin", b"\x02" + (SCRATCH / "small.safetensors").read_bytes()
    )


CENTRAL = (b"PK\x01\x02", 8)  # the central directory header: signature, offset of its flags


def _zip_flags(data: bytes, header: tuple[bytes, int], bits: int) -> bytes:
    """``data`` with general-purpose flag ``bits`` set in every zip header of one kind."""
    signature, offset = header
    out = bytearray(data)
    at = out.find(signature)
    while at >= 0:
        out[at + offset] |= bits
        at = out.find(signature, at + 1)
    return bytes(out)


def main() -> None:
    if sys.argv[1:2] == ["make-corpus"]:
        make_corpus()
        return
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)},make-corpus}} [libFuzzer args]")
    target = sys.argv.pop(1)
    _LAYOUTS.extend(_layouts())
    atheris.Setup(sys.argv, TARGETS[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
