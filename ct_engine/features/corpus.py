"""The corpus feature dashboards are measured on: local files, or the toy world's own text.

A corpus is a stream of documents (strings). :func:`read_texts` streams them from a local
file: ``.txt`` (one document per non-empty line), ``.jsonl`` (one JSON object per line, the
document in ``field``) or ``.parquet`` (the ``field`` column, read in row batches), so a
corpus larger than memory is never loaded whole. :func:`toy_world_texts` generates the toy
world's text: its training documents interleaved with every fact sentence of every template,
the held-out templates and facts included, so a feature that tracks a country is seen on
wordings the model was never trained on.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TEXT_SUFFIXES = (".txt", ".text")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
PARQUET_SUFFIXES = (".parquet",)
TOY_WORLD = "toy-world"


@dataclass(frozen=True)
class CorpusSpec:
    """Where the documents come from and how many tokens to read.

    Attributes:
        path: a local ``.txt``, ``.jsonl`` or ``.parquet`` file; None for the toy world's
            generated text.
        tokens: token budget (positions after the leading special token).
        field: the document's key in JSONL, its column in Parquet.
    """

    path: str | None = None
    tokens: int = 200_000
    field: str = "text"

    def describe(self) -> str:
        """Where the documents come from (the token count is stored beside it)."""
        return str(self.path) if self.path else "toy-world generated text"


def check_corpus_file(path: str | Path, field: str = "text") -> Path:
    """``path`` as a Path, or a one-line ``ValueError`` saying what is wrong with it."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TEXT_SUFFIXES + JSONL_SUFFIXES + PARQUET_SUFFIXES:
        raise ValueError(
            f"corpus {path}: unknown format {suffix or '(no suffix)'!r}; "
            "use a .txt (one document per line), .jsonl or .parquet file"
        )
    if not path.is_file():
        raise ValueError(f"corpus {path}: no such file")
    if suffix in PARQUET_SUFFIXES:
        import pyarrow.parquet as pq

        try:
            names = pq.ParquetFile(path).schema_arrow.names
        except Exception as err:  # pyarrow raises several types for a damaged file
            raise ValueError(f"corpus {path}: not a readable Parquet file ({err})") from None
        if field not in names:
            raise ValueError(f"corpus {path}: no column {field!r} (columns: {', '.join(names)})")
    return path


def read_texts(path: str | Path, field: str = "text") -> Iterator[str]:
    """Stream the documents of a local corpus file (see the module docstring). The file is
    checked now (:func:`check_corpus_file`), so a mistake surfaces before a model loads, not
    at the first document."""
    return _stream_texts(check_corpus_file(path, field), field)


def _stream_texts(path: Path, field: str) -> Iterator[str]:
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(columns=[field], batch_size=1024):
            for text in batch.column(0).to_pylist():
                if isinstance(text, str) and text.strip():
                    yield text
        return
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            if suffix in TEXT_SUFFIXES:
                yield line.rstrip("\n")
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"corpus {path}, line {number}: not JSON ({err.msg})") from None
            text = record.get(field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise ValueError(f"corpus {path}, line {number}: no string field {field!r}")
            if text.strip():
                yield text


def toy_world_texts(world=None, seed: int = 0) -> Iterator[str]:
    """An endless stream of toy-world documents, deterministic in ``seed``.

    Each round yields the training corpus's documents interleaved with every one-hop and
    two-hop fact sentence of every template and split (held-out ones included), shuffled.
    """
    from ct_engine.toyworld.corpus import CorpusConfig, generate_corpus
    from ct_engine.toyworld.default_model import load_world

    world = world or load_world()
    facts = [p.sentence for p in world.one_hop_prompts() + world.two_hop_prompts()]
    for round_ in itertools.count():
        rng = random.Random(f"toyworld-features-{world.seed}-{seed}-{round_}")
        docs = generate_corpus(world, seed=1000 + seed + round_, config=CorpusConfig(n_docs=2000))
        sentences = list(facts)
        rng.shuffle(sentences)
        for i, doc in enumerate(docs):
            yield doc
            # Three held-out-inclusive fact sentences after each training document.
            yield " ".join(sentences[3 * i % len(sentences) : 3 * i % len(sentences) + 3])


def corpus_texts(spec: CorpusSpec, model_name: str) -> Iterator[str]:
    """The documents of ``spec``: its file, or the toy world's text for the toy world model.

    Raises ``ValueError`` when no file is given for a model other than the toy world."""
    if spec.path is not None:
        return read_texts(spec.path, spec.field)
    if model_name == TOY_WORLD:
        return toy_world_texts()
    raise ValueError(
        f"no feature corpus for model {model_name!r}: give a .txt, .jsonl or .parquet file "
        "(feature_corpus: path in the config, --corpus on the command line)"
    )
