"""What the engine's model commands share: their flags, the model load and one attribution."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ct_engine.options import BACKENDS, DTYPE_NAMES


def add_attribution_flags(p: argparse.ArgumentParser, *, batch_size: int) -> None:
    p.add_argument(
        "--max_n_logits", type=int, default=10, help="most logit targets to attribute from"
    )
    p.add_argument(
        "--desired_logit_prob",
        type=float,
        default=0.95,
        help="stop adding logit targets once their probabilities sum to this",
    )
    p.add_argument("--batch_size", type=int, default=batch_size, help="backward passes per batch")
    p.add_argument(
        "--max_feature_nodes", type=int, default=7500, help="most feature nodes in the graph"
    )
    p.add_argument(
        "--node_threshold",
        type=float,
        default=0.8,
        help="pruning: the share of total node influence the kept nodes carry",
    )
    p.add_argument(
        "--edge_threshold",
        type=float,
        default=0.98,
        help="pruning: the share of total edge influence the kept edges carry",
    )
    p.add_argument("--verbose", action="store_true", help="progress bar and phase timings")


def check_attribution_flags(args: argparse.Namespace) -> None:
    """The numbers of :func:`add_attribution_flags`, checked before any model is loaded (a
    mistake found after the attribution would throw its time away). Raises ``ValueError``."""
    for flag in ("node_threshold", "edge_threshold"):
        value = getattr(args, flag)
        if not 0.0 <= value <= 1.0:  # NaN fails too
            raise ValueError(
                f"--{flag} {value} is out of range: it is a share of the total influence, "
                "between 0 and 1"
            )
    if args.max_n_logits < 1:
        raise ValueError(f"--max_n_logits must be at least 1, got {args.max_n_logits}")
    if not 0.0 < args.desired_logit_prob <= 1.0:
        raise ValueError(f"--desired_logit_prob must be in (0, 1], got {args.desired_logit_prob}")
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be at least 1, got {args.batch_size}")
    if args.max_feature_nodes < 0:
        raise ValueError(f"--max_feature_nodes must be at least 0, got {args.max_feature_nodes}")
    prompt = getattr(args, "prompt", None)
    if prompt is not None and not prompt.strip():
        raise ValueError("the prompt is empty")


def check_output_file(
    value: str, flag: str, suffixes: Sequence[str], hint: str = "", *, makes_folder: bool = False
) -> Path:
    """A file a command will write, checked before any model is loaded: its suffix is one of
    ``suffixes`` (the suffix picks the format), it is not a folder, and its folder exists (or,
    with ``makes_folder``, can be created) and takes new files. An existing file is replaced
    (as circuit-tracer's ``torch.save`` does). ``hint`` ends the message of a wrong suffix.
    Raises ``ValueError``; returns the path."""
    path = Path(value).expanduser()
    if path.is_dir():
        raise ValueError(
            f"{flag} {value} is a folder: give a file name, such as {path / 'graph'}{suffixes[0]}"
        )
    if path.suffix not in suffixes:
        raise ValueError(
            f"{flag} {value}: the suffix picks the file format; use {' or '.join(suffixes)}" + hint
        )
    if not makes_folder and not path.parent.exists():
        raise ValueError(f"{flag} {value}: the folder {path.parent} does not exist")
    _check_folder(path.parent, flag, value)
    return path


def check_output_folder(value: str, flag: str) -> Path:
    """A folder a command will write files in, checked before any model is loaded: a folder or
    nothing yet (it is created, with its parents, inside a folder that takes new files).
    Raises ``ValueError``; returns the path."""
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {value} is a file, not a folder")
    _check_folder(path, flag, value)
    return path


def _check_folder(folder: Path, flag: str, value: str) -> None:
    """``folder``, or the nearest of its parents that exists, is a folder that takes files."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{flag} {value}: {existing} is a file, not a folder")
    _check_writable(existing, flag, value)


def _check_writable(folder: Path, flag: str, value: str) -> None:
    """Create and remove a file in ``folder``: permission bits do not tell (root ignores them,
    a read-only mount does not show in them)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".ct-write-check-", dir=folder)
    except OSError as err:
        raise ValueError(
            f"{flag} {value}: cannot create files in {folder}: {err.strerror}"
        ) from None
    os.close(fd)
    os.unlink(probe)


def add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--transcoder_set", required=True)
    p.add_argument("-m", "--model", help="default: the transcoder config's model_name")
    p.add_argument("--dtype", choices=sorted(DTYPE_NAMES), default="float32", help="model dtype")
    p.add_argument("--backend", choices=BACKENDS, default="transformerlens", help="model backend")
    add_lazy_flags(p)


def add_lazy_flags(p: argparse.ArgumentParser) -> None:
    """``--lazy-encoder`` (off) and ``--lazy-decoder`` (on), circuit-tracer's defaults, each
    with its ``--no-`` form and underscore spellings."""
    add_switch(
        p,
        "lazy-encoder",
        default=False,
        help="read each encoder matrix from disk when used (less memory, slower)",
    )
    add_switch(
        p,
        "lazy-decoder",
        default=True,
        help="read decoder rows from disk as attribution needs them",
    )


def add_switch(p: argparse.ArgumentParser, name: str, *, default: bool, help: str) -> None:
    """An on/off flag: ``--NAME`` and ``--no-NAME``, each also spelt with underscores
    (``--lazy_decoder``, ``--no_lazy_decoder``), into ``args.NAME`` (underscored)."""
    under = name.replace("-", "_")
    names = [f"--{name}", f"--{under}", f"--no-{name}", f"--no_{under}"]
    turn = f"--no-{name}" if default else f"--{name}"
    p.add_argument(
        *dict.fromkeys(names),
        dest=under,
        action=_Switch,
        default=default,
        help=f"{help} (default: {'on' if default else 'off'}; {turn} turns it "
        f"{'off' if default else 'on'})",
    )


class _Switch(argparse.Action):
    """Sets ``True`` for the option strings without ``--no``, ``False`` for the others (as
    :class:`argparse.BooleanOptionalAction`, which does not take the underscore forms)."""

    def __init__(self, option_strings, dest, default=None, help=None):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, not option_string.startswith("--no"))

    def format_usage(self) -> str:
        return f"{self.option_strings[0]} | {self.option_strings[2]}"


def load_model(model_name: str, transcoders: str, dtype: str = "float32", **load):
    import torch

    from ct_engine.replacement import ReplacementModel

    return ReplacementModel.from_pretrained(
        model_name, transcoders, dtype=getattr(torch, dtype), **load
    )


def load_model_from_args(args: argparse.Namespace):
    """The model and transcoders named by :func:`add_model_flags`."""
    check_transcoder_reference(args.transcoder_set)
    return load_model(
        args.model or _model_from_config(args.transcoder_set),
        args.transcoder_set,
        dtype=DTYPE_NAMES[args.dtype],
        backend=args.backend,
        lazy_encoder=args.lazy_encoder,
        lazy_decoder=args.lazy_decoder,
    )


def check_transcoder_reference(transcoder_set: str) -> None:
    """A local transcoder folder and its config, read before the model loads (the transcoders
    themselves load after it, once the model's shape is known). Raises
    :class:`~ct_engine.transcoders.TranscoderFormatError` (a ``ValueError``)."""
    from ct_engine.transcoders.formats.common import CONFIG_FILE, read_config, validate_config
    from ct_engine.transcoders.refs import parse_transcoder_ref

    ref = parse_transcoder_ref(transcoder_set)
    if ref.is_local:
        validate_config(read_config(ref.local_path), ref.local_path / CONFIG_FILE)


def _model_from_config(transcoder_set: str) -> str:
    from ct_engine.transcoders import load_transcoders

    name = load_transcoders(transcoder_set, lazy_encoder=True).config.get("model_name")
    if not name:
        raise ValueError("--model is required because the transcoder config has no model_name")
    return name


def run_attribution(args: argparse.Namespace, model):
    """Attribute ``args.prompt`` on ``model`` (or on ``model()``, timed as the load), print the
    graph's summary; ``(graph, model)``."""
    from ct_engine.attribution import attribute
    from ct_engine.summary import graph_summary

    start = time.perf_counter()
    model = model() if callable(model) else model
    load_s = time.perf_counter() - start
    graph = attribute(
        args.prompt,
        model,
        attribution_targets=_targets(args, model),
        offload=getattr(args, "offload", None),
        max_n_logits=args.max_n_logits,
        desired_logit_prob=args.desired_logit_prob,
        batch_size=args.batch_size,
        max_feature_nodes=args.max_feature_nodes,
        verbose=args.verbose,
    )
    graph.timings = {"load_model": load_s, **graph.timings}
    print(
        graph_summary(
            graph,
            model.tokenizer,
            node_threshold=args.node_threshold,
            edge_threshold=args.edge_threshold,
        )
    )
    return graph, model


def _targets(args: argparse.Namespace, model):
    """``--target`` strings, or a ``--target-diff`` custom direction, or None (salient)."""
    from ct_engine.attribution import CustomTarget

    strings = getattr(args, "target", None)
    diff = getattr(args, "target_diff", None)
    if diff:
        a, b = (vocabulary_token_id(word, model.tokenizer, "--target-diff") for word in diff)
        unembed = model.impl.unembedding
        return [CustomTarget(f"{diff[0]} - {diff[1]}", 1.0, unembed[:, a] - unembed[:, b])]
    if strings:
        return [vocabulary_token_id(word, model.tokenizer, "--target") for word in strings]
    return None


def vocabulary_token_id(word: str, tokenizer, flag: str) -> int:
    """The id of ``word`` if it is one token of the vocabulary; a ``ValueError`` naming
    ``flag`` otherwise (see :func:`ct_engine.attribution.targets.single_token_id`)."""
    from ct_engine.attribution.targets import single_token_id

    return single_token_id(word, tokenizer, what=flag)
