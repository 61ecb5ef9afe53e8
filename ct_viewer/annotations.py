"""Annotations: the lake table ``annotations``, one partition (``graph=<id>``) per graph.

Every change is a read-modify-write of the graph's partition under two locks: a per-process
lock (threads of this server) and an ``fcntl`` lock on a per-graph lock file (other server
processes on this machine sharing the lake). The lock file is the lake's local file
``files/locks/annotations-graph=<id>.lock`` (for a lake on object storage, in its local
cache folder). :meth:`ct_lake.lake.Lake.write_table` replaces the partition's rows in one
atomic commit, so readers (other servers, DuckDB) never see a partial write and read
without locking. The write itself cannot tell that the rows changed since they were read:
the lock is what keeps two writers of one graph from losing an update, so servers on
different machines must not annotate the same graph of one shared lake at the same time.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import threading
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

TABLE = "annotations"
LOCKS = "locks"  # the lake's file kind of the lock files
KINDS = ("label", "supernode", "note")
MAX_AUTHOR = 100
MAX_TEXT = 2000
MAX_NODE_IDS = 500
MAX_NODE_ID_CHARS = 64
ANNOTATION_ID = re.compile(r"^[0-9a-f]{32}$")
FIELDS = ("author", "kind", "node_ids", "text")

_PROCESS_LOCK = threading.Lock()  # one per process: every store shares it


class InvalidBody(ValueError):
    """A request body that breaks the contract: a 422."""


def validate(body: Any, node_ids: Mapping[str, Any]) -> dict:
    """The checked ``{"author", "kind", "node_ids", "text"}`` of a create request.

    ``author`` and ``text`` are stripped; ``text`` must not be empty; a label names exactly one
    node, a supernode at least one, a note any number (0 to 500); node ids are unique and
    must be nodes of the graph (``node_ids``)."""
    if not isinstance(body, dict):
        raise InvalidBody("the body must be a JSON object")
    missing = [f for f in FIELDS if f not in body]
    extra = sorted(set(body) - set(FIELDS))
    if missing or extra:
        raise InvalidBody(
            f"the body needs exactly the fields {list(FIELDS)}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unknown {extra}" if extra else "")
        )
    author, kind, ids, text = (body[f] for f in FIELDS)
    if not isinstance(author, str) or len(author.strip()) > MAX_AUTHOR:
        raise InvalidBody(f"author must be a string of at most {MAX_AUTHOR} characters")
    if kind not in KINDS:
        raise InvalidBody(f"kind must be one of {list(KINDS)}")
    if not isinstance(text, str) or not text.strip() or len(text.strip()) > MAX_TEXT:
        raise InvalidBody(f"text must be a non-empty string of at most {MAX_TEXT} characters")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InvalidBody("node_ids must be a list of node id strings")
    if len(ids) > MAX_NODE_IDS:
        raise InvalidBody(f"at most {MAX_NODE_IDS} node ids")
    if len(set(ids)) != len(ids):
        raise InvalidBody("node_ids has duplicates")
    if kind == "label" and len(ids) != 1:
        raise InvalidBody("a label names exactly one node")
    if kind == "supernode" and not ids:
        raise InvalidBody("a supernode groups at least one node")
    unknown = [i for i in ids if i not in node_ids]
    if unknown:
        shown = ", ".join(repr(i[:MAX_NODE_ID_CHARS]) for i in unknown[:5])
        raise InvalidBody(f"{len(unknown)} node id(s) are not nodes of this graph: {shown}")
    return {"author": author.strip(), "kind": kind, "node_ids": list(ids), "text": text.strip()}


def _to_json(row: dict, graph: str) -> dict:
    created = row["created_at"]
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return {
        "id": row["id"],
        "graph": graph,
        "author": row["author"],
        "created_at": created.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "kind": row["kind"],
        "node_ids": list(row["node_ids"] or []),
        "text": row["text"],
    }


class AnnotationStore:
    """Annotations of the graphs of one lake."""

    def __init__(self, lake):
        self.lake = lake

    def _rows(self, graph: str) -> list[dict]:
        if not self.lake.has_partition(TABLE, graph=graph):
            return []
        try:
            return self.lake.read_table(TABLE, graph=graph).to_pylist()
        except Exception as err:  # a damaged data file: whatever pyarrow raises
            from ct_lake.storage import LakeError

            if isinstance(err, LakeError):
                raise
            why = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise LakeError(
                f"the annotations of graph {graph} cannot be read ({why}); `ct lake check` "
                "lists the lake's damaged files, `ct lake check --quarantine` sets them aside"
            ) from None

    def list(self, graph: str) -> list[dict]:
        """The graph's annotations, oldest first (ties by id)."""
        rows = sorted(self._rows(graph), key=lambda r: (r["created_at"], r["id"]))
        return [_to_json(r, graph) for r in rows]

    @contextlib.contextmanager
    def _locked(self, graph: str) -> Iterator[None]:
        path = self.lake.file_path(LOCKS, f"{TABLE}-graph={graph}.lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        with _PROCESS_LOCK, open(path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def add(self, graph: str, checked: dict) -> dict:
        """Store a validated annotation (see :func:`validate`); return it."""
        row = {
            "id": uuid.uuid4().hex,
            "author": checked["author"],
            "created_at": datetime.now(UTC),
            "kind": checked["kind"],
            "node_ids": checked["node_ids"],
            "text": checked["text"],
        }
        with self._locked(graph):
            rows = self._rows(graph)
            rows.append(row)
            self.lake.write_table(TABLE, rows, graph=graph)
        return _to_json(row, graph)

    def delete(self, graph: str, annotation_id: str) -> bool:
        """Remove one annotation; False if the graph has none with this id."""
        if not ANNOTATION_ID.match(annotation_id):
            return False
        if not self.lake.has_partition(TABLE, graph=graph):
            return False
        with self._locked(graph):
            rows = self._rows(graph)
            kept = [r for r in rows if r["id"] != annotation_id]
            if len(kept) == len(rows):
                return False
            self.lake.write_table(TABLE, kept, graph=graph)
        return True
