"""The semantic cache of past answers: an answer is served again only while the documents it came from are unchanged.

An entry holds the question, its embedding, the answer, the chunks and document content hashes it was grounded on,
its access tags, ``created_at`` and an absolute ``expires_at`` (a hit never extends it).

:meth:`SemanticCache.lookup` finds the nearest entry the caller may see and returns it when

1. its cosine similarity reaches the threshold (calibrated by :mod:`feedstock.serving.calibrate`), and
2. :func:`same_intent` finds no sign of a different question: a negation, an opposite (enable/disable), or the
   same two terms in the opposite direction ("from monthly to annual" against "from annual to monthly"). Sentence
   embeddings place those pairs closer than most paraphrases (MiniLM: 0.998 for the swapped billing question,
   0.71 for "turn on 2FA" against "enable two-factor authentication"), so no threshold alone separates them.

A normalized-question hash is the exact-match fast path; it passes the same checks of access, expiry and grounding.
Grounding is checked on every hit against the released index (``doc_id -> content hash``), and
:func:`invalidate` (run by ``rag_feed`` after each release) deletes every entry grounded on a document that changed
or left the index.

Stores: :class:`LakeStore` (default: a LanceDB table beside the RAG index, for one service process) and
:class:`RedisStore` (Redis 7 without modules, shared by any number of service processes). Either way each process
keeps the vectors it may compare in memory (:class:`_Mirror`) and searches them with one matrix product; a store
only has to list what changed.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from feedstock.errors import ConfigError

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
NEGATIONS = frozenset(
    "not no never without cannot can't don't doesn't didn't isn't aren't won't shouldn't wouldn't couldn't "
    "nor none nothing".split()
)
# Opposites a question can turn on. Each pair is matched on word stems (enable matches enabled/enabling).
OPPOSITES = [
    ("enable", "disable"),
    ("activat", "deactivat"),
    ("allow", "block"),
    ("allow", "deny"),
    ("allow", "forbid"),
    ("add", "remov"),
    ("add", "delet"),
    ("creat", "delet"),
    ("install", "uninstall"),
    ("start", "stop"),
    ("open", "clos"),
    ("lock", "unlock"),
    ("includ", "exclud"),
    ("import", "export"),
    ("upload", "download"),
    ("encrypt", "decrypt"),
    ("subscrib", "unsubscrib"),
    ("increas", "decreas"),
    ("rais", "lower"),
    ("upgrad", "downgrad"),
    ("before", "after"),
    ("min", "max"),
    ("minimum", "maximum"),
    ("lowest", "highest"),
    ("first", "last"),
    ("on", "off"),
    ("in", "out"),
    ("inbound", "outbound"),
    ("ingress", "egress"),
    ("public", "private"),
    ("accept", "reject"),
    ("grant", "revok"),
    ("join", "leav"),
    ("hire", "fire"),
    ("paid", "unpaid"),
    ("connect", "disconnect"),
    ("mount", "unmount"),
    ("pause", "resum"),
    ("sign in", "sign out"),
    ("log in", "log out"),
    ("login", "logout"),
    ("more", "less"),
    ("more", "fewer"),
    ("higher", "lower"),
    ("faster", "slower"),
    ("cheaper", "more expensive"),
]
DIRECTION = re.compile(r"\bfrom ([a-z0-9]+) to ([a-z0-9]+)\b")


def normalize(question: str) -> str:
    """Lowercased words, punctuation and spacing dropped: the exact-match key's text."""
    return " ".join(_WORD.findall(question.lower()))


def question_key(question: str) -> str:
    return hashlib.sha256(normalize(question).encode()).hexdigest()[:32]


def _has(words: str, stem: str) -> bool:
    """Whether ``words`` holds ``stem``: as a word prefix from 4 letters up (enable: enabled), else whole."""
    tail = "" if len(stem) >= 4 else r"\b"
    return re.search(rf"\b{re.escape(stem)}{tail}", words) is not None


def entities(question: str) -> frozenset[str]:
    """Names and numbers: words with a digit, in capitals, or capitalized after the first word (lowercased)."""
    words = re.findall(r"[A-Za-z0-9][A-Za-z0-9_.'-]*", question)
    found = set()
    for i, word in enumerate(words):
        word = word.rstrip(".'").removesuffix("'s")
        if any(c.isdigit() for c in word) or (len(word) > 1 and word.isupper()) or (i and word[:1].isupper()):
            found.add(word.lower())
    return frozenset(found - {"i"})


def same_intent(asked: str, cached: str) -> str | None:
    """None when nothing says the two questions differ in meaning; else the rule that says so.

    The rules look only at what differs between the questions, so a paraphrase passes whatever its wording,
    as long as it names the same things with the same polarity:

    - ``negation``: one question negates and the other does not;
    - ``opposite:<a>/<b>``: one names ``a`` and the other ``b`` (enable/disable, before/after, ...);
    - ``direction``: "from X to Y" against "from Y to X";
    - ``entity``: each names a product, system or number the other does not (E100/E200, Salesforce/HubSpot).
    """
    a, b = normalize(asked), normalize(cached)
    wa, wb = set(a.split()), set(b.split())
    if (wa & NEGATIONS) != (wb & NEGATIONS):
        return "negation"
    for one, other in OPPOSITES:
        a_one, a_other, b_one, b_other = _has(a, one), _has(a, other), _has(b, one), _has(b, other)
        if (a_one and not a_other and b_other and not b_one) or (
            a_other and not a_one and b_one and not b_other
        ):
            return f"opposite:{one}/{other}"
    da, db = DIRECTION.search(a), DIRECTION.search(b)
    if da and db and (da.group(1), da.group(2)) == (db.group(2), db.group(1)):
        return "direction"
    ea, eb = entities(asked), entities(cached)
    if ea - eb and eb - ea:  # a name swapped for another; one only spelled out ("2FA") is not a difference
        return "entity"
    return None


@dataclass
class Entry:
    question: str
    answer: str
    vector: np.ndarray
    model: str
    access_tags: tuple[str, ...] = ()
    chunk_ids: tuple[str, ...] = ()
    grounding: dict[str, str] = field(default_factory=dict)  # doc_id -> content hash at store time
    created_at: float = 0.0
    expires_at: float = 0.0
    id: str = ""
    key: str = ""

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "question": self.question,
            "answer": self.answer,
            "vector": self.vector.astype(np.float32).tolist(),
            "model": self.model,
            "access_tags": list(self.access_tags),
            "chunk_ids": list(self.chunk_ids),
            "grounding": json.dumps(self.grounding, sort_keys=True),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Entry:
        return cls(
            id=row["id"],
            key=row["key"],
            question=row["question"],
            answer=row["answer"],
            vector=np.asarray(row["vector"], dtype=np.float32),
            model=row["model"],
            access_tags=tuple(row["access_tags"] or ()),
            chunk_ids=tuple(row["chunk_ids"] or ()),
            grounding=json.loads(row["grounding"] or "{}"),
            created_at=float(row["created_at"]),
            expires_at=float(row["expires_at"]),
        )

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "access_tags": list(self.access_tags),
            "chunk_ids": list(self.chunk_ids),
            "grounding": self.grounding,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
        }


def visible(entry_tags: tuple[str, ...], caller_tags: frozenset[str]) -> bool:
    """A caller sees what carries only tags it holds; an untagged caller sees only untagged data."""
    return set(entry_tags) <= caller_tags


# ---- stores ----------------------------------------------------------------------------------------------


class LakeStore:
    """Entries in a LanceDB table ``cache`` beside the RAG index (``<lake>/rag/lancedb``): the embedded default.

    Its change token is the table version; a process that sees another version reloads every entry.
    """

    TABLE = "cache"

    def __init__(self, lake):
        self.lake = lake
        self._handle = None  # the open table: checking its latest version takes 1 ms, opening it 150 ms

    def _table(self, create: bool = False):
        from feedstock.rag.index import _connect

        if self._handle is None:
            db = _connect(self.lake)
            try:
                self._handle = db.open_table(self.TABLE)
            except (FileNotFoundError, ValueError):
                if create:
                    self._handle = db.create_table(self.TABLE, schema=_arrow_schema(), exist_ok=True)
        return self._handle

    def put(self, entry: Entry) -> None:
        import pyarrow as pa

        table = self._table(create=True)
        table.add(pa.Table.from_pylist([entry.to_row()], schema=_arrow_schema()))

    def delete(self, ids: list[str]) -> int:
        table = self._table()
        if table is None or not ids:
            return 0
        before = table.count_rows()
        quoted = ", ".join("'" + i.replace("'", "''") + "'" for i in ids)
        table.delete(f"id IN ({quoted})")
        return before - table.count_rows()

    def compact(self, rewrite) -> None:
        """Let ``rewrite(table)`` write the table anew (``forget``: deleted entries leave the files too)."""
        if (table := self._table()) is not None:
            rewrite(table, "false")

    def token(self) -> Any:
        table = self._table()
        if table is None:
            return None
        table.checkout_latest()
        return table.version

    def load(self) -> list[Entry]:
        table = self._table()
        if table is None:
            return []
        table.checkout_latest()  # a version this handle saw may be gone (a forget request rewrote the table)
        return [Entry.from_row(row) for row in table.to_arrow().to_pylist()]


def _arrow_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.string()),
            ("key", pa.string()),
            ("question", pa.string()),
            ("answer", pa.string()),
            ("vector", pa.list_(pa.float32())),
            ("model", pa.string()),
            ("access_tags", pa.list_(pa.string())),
            ("chunk_ids", pa.list_(pa.string())),
            ("grounding", pa.string()),
            ("created_at", pa.float64()),
            ("expires_at", pa.float64()),
        ]
    )


class RedisStore:
    """Entries in Redis 7 (no modules): one hash per entry, expiring with it, and a stream of changes.

    Every service process follows the stream (``XREAD`` from the last id it applied), so what one process stores
    another can hit, and a deletion reaches every process before its next lookup.
    """

    def __init__(self, url: str, prefix: str = "feedstock:cache"):
        import redis

        self.client = redis.Redis.from_url(url)
        self.prefix = prefix
        self.log = f"{prefix}:log"

    def _key(self, entry_id: str) -> str:
        return f"{self.prefix}:entry:{entry_id}"

    def put(self, entry: Entry) -> None:
        row = entry.to_row()
        row["vector"] = entry.vector.astype("<f4").tobytes()
        row["access_tags"] = json.dumps(row["access_tags"])
        row["chunk_ids"] = json.dumps(row["chunk_ids"])
        pipe = self.client.pipeline()
        pipe.hset(self._key(entry.id), mapping=row)
        pipe.expireat(self._key(entry.id), int(entry.expires_at) + 1)
        pipe.xadd(self.log, {"op": "put", "id": entry.id})
        pipe.execute()

    def delete(self, ids: list[str]) -> int:
        if not ids:
            return 0
        pipe = self.client.pipeline()
        for entry_id in ids:
            pipe.delete(self._key(entry_id))
        for entry_id in ids:
            pipe.xadd(self.log, {"op": "delete", "id": entry_id})
        return sum(pipe.execute()[: len(ids)])

    def _get(self, entry_id: str) -> Entry | None:
        raw = self.client.hgetall(self._key(entry_id))
        if not raw:
            return None
        row = {k.decode(): v for k, v in raw.items()}
        text = {k: v.decode() for k, v in row.items() if k != "vector"}
        return Entry.from_row(
            {
                **text,
                "vector": np.frombuffer(row["vector"], dtype="<f4"),
                "access_tags": json.loads(text["access_tags"]),
                "chunk_ids": json.loads(text["chunk_ids"]),
            }
        )

    def changes(self, since: str) -> tuple[str, list[tuple[str, Entry | None]]]:
        """The changes logged after stream id ``since``: ``(id, entry)`` to put or ``(id, None)`` to drop."""
        out: list[tuple[str, Entry | None]] = []
        last = since
        while True:
            batch = self.client.xread({self.log: last}, count=10_000) or []
            if not batch:
                return last, out
            for stream_id, fields in batch[0][1]:
                last = stream_id.decode()
                entry_id = fields[b"id"].decode()
                out.append((entry_id, self._get(entry_id) if fields[b"op"] == b"put" else None))

    def load(self) -> list[Entry]:
        ids = [
            k.decode().rsplit(":", 1)[-1] for k in self.client.scan_iter(f"{self.prefix}:entry:*", count=1000)
        ]
        return [e for e in (self._get(i) for i in ids) if e is not None]

    def clear(self) -> None:
        keys = list(self.client.scan_iter(f"{self.prefix}:*"))
        if keys:
            self.client.delete(*keys)


# ---- the in-memory mirror and the cache ---------------------------------------------------------------------


class _Mirror:
    """The entries of one store, with their vectors stacked for one matrix product per lookup."""

    def __init__(self):
        self.entries: dict[str, Entry] = {}
        self.by_key: dict[str, str] = {}
        self._matrix: np.ndarray | None = None
        self._ids: list[str] = []

    def replace(self, entries: list[Entry]) -> None:
        self.entries = {e.id: e for e in entries}
        self._rebuild()

    def apply(self, changes: list[tuple[str, Entry | None]]) -> None:
        for entry_id, entry in changes:
            if entry is None:
                self.entries.pop(entry_id, None)
            else:
                self.entries[entry_id] = entry
        if changes:
            self._rebuild()

    def _rebuild(self) -> None:
        self._ids = list(self.entries)
        self.by_key = {e.key: e.id for e in self.entries.values()}
        vectors = [self.entries[i].vector for i in self._ids]
        self._matrix = np.vstack(vectors).astype(np.float32) if vectors else None

    def nearest(self, vector: np.ndarray, allowed) -> list[tuple[float, Entry]]:
        """Entries by cosine similarity (vectors are normalized), best first, filtered by ``allowed``."""
        if self._matrix is None:
            return []
        scores = self._matrix @ vector.astype(np.float32)
        top = np.argpartition(-scores, min(64, len(scores) - 1))[:64]
        out = []
        for i in top[np.argsort(-scores[top])]:
            entry = self.entries[self._ids[i]]
            if allowed(entry):
                out.append((float(scores[i]), entry))
        return out


@dataclass
class Lookup:
    entry: Entry | None
    similarity: float | None = None
    reason: str = "miss"  # hit, exact, miss, below_threshold, intent:<rule>, stale, expired


class SemanticCache:
    """Lookup, store and delete over a store; ``grounding()`` gives the released index's document hashes."""

    def __init__(self, store, embed, model: str, threshold: float, ttl_seconds: float, grounding=None):
        self.store, self.embed, self.model = store, embed, model
        self.threshold, self.ttl = threshold, ttl_seconds
        self.grounding = grounding or (lambda: None)
        self.mirror = _Mirror()
        self._token: Any = object()
        self._lock = threading.Lock()
        self.stats = {"hits": 0, "misses": 0, "stale_removed": 0, "stored": 0, "deleted": 0, "false_hits": 0}

    def _sync(self) -> None:
        with self._lock:
            if isinstance(self.store, RedisStore):
                token = self._token if isinstance(self._token, str) else "0-0"
                if token == "0-0":
                    self.mirror.replace([])
                self._token, changes = self.store.changes(token)
                self.mirror.apply(changes)
                return
            token = self.store.token()
            if token != self._token:
                self.mirror.replace(self.store.load())
                self._token = token

    def _written(self, changes: list[tuple[str, Entry | None]]) -> None:
        """This process's own write, applied to its mirror at once, so a write does not cost a reload of every
        entry. With the lake store, a version that is not exactly one past the mirror's means another writer
        came between, and the mirror reloads."""
        with self._lock:
            if isinstance(self.store, RedisStore):
                self.mirror.apply(changes)  # the stream brings it again: applying is idempotent
                return
            token = self.store.token()
            if isinstance(self._token, int) and token == self._token + 1:
                self.mirror.apply(changes)  # the table is our write away from what the mirror holds
            else:
                self.mirror.replace(self.store.load())  # never synced, or another writer came between
            self._token = token

    def lookup(self, question: str, caller_tags: frozenset[str], now: float | None = None) -> Lookup:
        now = time.time() if now is None else now
        self._sync()
        current = self.grounding()

        def allowed(entry: Entry) -> bool:
            return entry.model == self.model and visible(entry.access_tags, caller_tags)

        def fresh(entry: Entry) -> str | None:
            if entry.expires_at <= now:
                return "expired"
            if current is not None and any(current.get(d) != h for d, h in entry.grounding.items()):
                return "stale"
            return None

        exact_id = self.mirror.by_key.get(question_key(question))
        exact = self.mirror.entries.get(exact_id) if exact_id else None
        if exact is not None and allowed(exact) and fresh(exact) is None:
            self.stats["hits"] += 1
            return Lookup(exact, 1.0, "exact")
        vector = self.embed([question])[0]
        result = Lookup(None)
        for similarity, entry in self.mirror.nearest(vector, allowed):
            if similarity < self.threshold:
                if result.reason == "miss":  # the best candidate's reason is the one reported
                    result = Lookup(None, similarity, "below_threshold")
                break
            if (problem := fresh(entry)) is not None:
                if problem == "stale":
                    self.delete([entry.id])
                    self.stats["stale_removed"] += 1
                continue
            if (rule := same_intent(question, entry.question)) is not None:
                if result.reason == "miss":
                    result = Lookup(None, similarity, f"intent:{rule}")
                continue
            self.stats["hits"] += 1
            return Lookup(entry, similarity, "hit")
        self.stats["misses"] += 1
        return result

    def store_answer(
        self,
        question: str,
        answer: str,
        access_tags: tuple[str, ...] = (),
        chunk_ids: tuple[str, ...] = (),
        grounding: dict[str, str] | None = None,
        ttl_seconds: float | None = None,
        now: float | None = None,
    ) -> Entry:
        now = time.time() if now is None else now
        ttl = self.ttl if ttl_seconds is None else ttl_seconds
        if ttl <= 0:
            raise ConfigError("ttl_seconds must be positive")
        entry = Entry(
            id=uuid.uuid4().hex,
            key=question_key(question),
            question=question,
            answer=answer,
            vector=self.embed([question])[0],
            model=self.model,
            access_tags=tuple(sorted(set(access_tags))),
            chunk_ids=tuple(chunk_ids),
            grounding=dict(grounding or {}),
            created_at=now,
            expires_at=now + ttl,
        )
        self.store.put(entry)
        self._written([(entry.id, entry)])
        self.stats["stored"] += 1
        return entry

    def delete(self, ids: list[str], false_hit: bool = False) -> int:
        removed = self.store.delete(ids)
        self._written([(entry_id, None) for entry_id in ids])
        self.stats["deleted"] += removed
        self.stats["false_hits"] += removed if false_hit else 0
        return removed

    def entries(self) -> list[Entry]:
        self._sync()
        return list(self.mirror.entries.values())

    def entry(self, entry_id: str) -> Entry | None:
        self._sync()
        return self.mirror.entries.get(entry_id)


def open_store(config, lake):
    """The configured store: ``serve.cache.store``."""
    if config.serve.cache.store == "redis":
        return RedisStore(config.serve.cache.redis_url, config.serve.cache.redis_prefix)
    return LakeStore(lake)


def released_chunks(lake) -> dict[str, tuple[str, str, tuple[str, ...]]] | None:
    """``chunk_id -> (doc_id, content hash, access tags)`` of the released index; None before the first release
    (an index released empty has no chunks, so every grounded entry is stale)."""
    from feedstock.rag.index import chunk_map, open_released, read_pointer

    pointer = read_pointer(lake)
    if pointer is None:
        return None
    return {} if pointer.get("version") is None else chunk_map(open_released(lake, pointer)[1])


def documents_of(chunks: dict[str, tuple[str, str, tuple[str, ...]]]) -> dict[str, str]:
    """``doc_id -> content hash`` of a :func:`released_chunks` mapping."""
    return {doc_id: doc_hash for doc_id, doc_hash, _ in chunks.values()}


def invalidate(store, current: dict[str, str]) -> dict[str, int]:
    """Delete every entry grounded on a document whose content hash changed or that left the index
    (``current``: ``doc_id -> content hash`` of the released index)."""
    entries = store.load()
    stale = [e.id for e in entries if any(current.get(d) != h for d, h in e.grounding.items())]
    return {"entries": len(entries), "invalidated": store.delete(stale)}


def refresh(config, lake) -> dict[str, int]:
    """The cache after a release (``rag_feed``, ``feedstock cache refresh``): entries grounded on a document that
    changed or left the index are deleted, then ``serve.cache.warm``'s past answers are loaded."""
    chunks = released_chunks(lake)
    if chunks is None:
        return {"entries": 0, "invalidated": 0, "warmed": 0}
    store = open_store(config, lake)
    return {**invalidate(store, documents_of(chunks)), **warm(config, lake, store, chunks)}


def warm(
    config, lake, store, chunks: dict[str, tuple[str, str, tuple[str, ...]]], embed=None
) -> dict[str, int]:
    """Load past answers from ``serve.cache.warm``'s warehouse source into ``store``, each grounded on its own
    document of the released index ``chunks`` (``<source>/<key>``) and carrying that document's access tags.

    Rerunning it adds nothing that is there already; a row whose document is not in the index (outside the
    template's ``where``, or not released yet) is skipped and counted.
    """
    from feedstock.errors import ConfigError
    from feedstock.rag.embedders import embedder
    from feedstock.rag.index import model_version
    from feedstock.warehouse import bronze_table

    spec = config.serve.cache.warm
    if spec is None:
        return {"warmed": 0}
    source = next((s for s in config.sources if s.name == spec.source), None)
    if source is None or source.kind != "warehouse":
        raise ConfigError(
            f"config 'serve.cache.warm': source '{spec.source}' is not a configured warehouse source"
        )
    if lake.table(bronze_table(source.name)) is None:
        return {"warmed": 0, "rows": 0}
    documents: dict[str, tuple[str, tuple[str, ...], list[str]]] = {}
    for chunk_id, (doc_id, doc_hash, tags) in chunks.items():
        documents.setdefault(doc_id, (doc_hash, tags, []))[2].append(chunk_id)
    rows = lake.read(
        bronze_table(source.name), columns=[source.key, spec.question, spec.answer, "_op"]
    ).to_pylist()
    present = {(e.key, json.dumps(e.grounding, sort_keys=True)) for e in store.load()}
    model = model_version(config.rag.embedding)
    todo, skipped = [], 0
    for row in rows:
        doc_id = f"{source.name}/{row[source.key]}"
        if (
            row["_op"] == "delete"
            or doc_id not in documents
            or not row[spec.question]
            or not row[spec.answer]
        ):
            skipped += 1
            continue
        doc_hash, tags, chunk_ids = documents[doc_id]
        if (question_key(row[spec.question]), json.dumps({doc_id: doc_hash})) in present:
            continue
        todo.append((row, doc_id, doc_hash, tags, chunk_ids))
    if todo:
        vectors = (embed or embedder(config.rag.embedding).embed)([row[spec.question] for row, *_ in todo])
        now = time.time()
        for (row, doc_id, doc_hash, tags, chunk_ids), vector in zip(todo, vectors, strict=True):
            store.put(
                Entry(
                    id=uuid.uuid4().hex,
                    key=question_key(row[spec.question]),
                    question=row[spec.question],
                    answer=row[spec.answer],
                    vector=vector,
                    model=model,
                    access_tags=tuple(sorted(tags)),
                    chunk_ids=tuple(sorted(chunk_ids)),
                    grounding={doc_id: doc_hash},
                    created_at=now,
                    expires_at=now + config.serve.cache.ttl_seconds,
                )
            )
    return {"rows": len(rows), "warmed": len(todo), "skipped": skipped}
