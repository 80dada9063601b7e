"""The public read API: `load_label_words(spec, db)` -> LabelWords, the label-word set the model consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .checksum import labels_checksum
from .errors import InputError, KbxError, read_json_file


@dataclass
class LabelWords:
    """Expanded label words of one build (or JSON file).

    labels: label -> words by rank; entity_types: label -> PER/LOC/ORG/MISC; build_id: store build or None;
    source: the build's source name ("textual", "visualgenome", "json"); checksum: labels_checksum(labels).
    """

    labels: dict[str, list[str]]
    entity_types: dict[str, str] = field(default_factory=dict)
    build_id: int | None = None
    source: str = "json"
    checksum: str = ""

    def __post_init__(self) -> None:
        computed = labels_checksum(self.labels)
        if self.checksum and self.checksum != computed:
            raise KbxError(
                f"label words checksum mismatch: stored {self.checksum[:12]!r}, computed {computed[:12]!r}"
            )
        self.checksum = computed
        for label in self.labels:
            self.entity_types.setdefault(label, _default_type(label))

    def words(self) -> list[str]:
        """Flat, de-duplicated words in label order then rank: the label-word set C (length L_C)."""
        return list(dict.fromkeys(w for words in self.labels.values() for w in words))

    def to_json(self) -> dict:
        return {
            "labels": self.labels,
            "entity_types": self.entity_types,
            "build_id": self.build_id,
            "source": self.source,
            "checksum": self.checksum,
        }

    @classmethod
    def from_json(cls, d: dict) -> LabelWords:
        """Inverse of to_json; also accepts a bare {label: [words]} mapping."""
        if not isinstance(d, dict):
            raise KbxError("label words JSON must be an object")
        wrapped = isinstance(d.get("labels"), dict)
        labels = d["labels"] if wrapped else d
        if not all(isinstance(k, str) and isinstance(v, list) for k, v in labels.items()):
            raise KbxError(
                'label words JSON must map each label to a list of words: {"labels": {label: [...]}}'
            )
        meta = d if wrapped else {}
        types = meta.get("entity_types") or {}
        if not isinstance(types, dict) or not all(isinstance(v, str) for v in types.values()):
            raise KbxError('"entity_types" must map each label to a type string')
        build_id = meta.get("build_id")
        if build_id is not None and (not isinstance(build_id, int) or isinstance(build_id, bool)):
            raise KbxError('"build_id" must be an integer or null')
        if not all(
            isinstance(w, str | int | float) and not isinstance(w, bool) for v in labels.values() for w in v
        ):
            raise KbxError("label words must be strings")
        return cls(
            labels={k: [str(w) for w in v] for k, v in labels.items()},
            entity_types=dict(types),
            build_id=build_id,
            source=str(meta.get("source") or "json"),
            checksum=str(meta.get("checksum") or ""),
        )


def _default_type(label: str) -> str:
    from .scheme import load_scheme

    try:
        return load_scheme().entity_types().get(label, "MISC")
    except KbxError:
        return "MISC"


def load_label_words(spec: str, db: str | Path | None = None) -> LabelWords:
    """Resolve `spec` into label words.

    spec: a JSON file path; a build id ("7"); or a source name ("textual") meaning its latest build.
    db: the store (default $KBX_DB, else $CATMNER_HOME/kb.sqlite).
    """
    spec = str(spec)
    path = Path(spec).expanduser()
    if spec.endswith(".json") or (path.is_file() and not spec.isdigit()):
        data = read_json_file(path, "label words")
        try:
            return LabelWords.from_json(data)
        except KbxError as e:
            raise InputError(path, str(e)) from e
    from .store import Store

    with Store.open(db, create=False) as store:
        build = store.resolve_build(spec)
        labels, types = store.label_words(build["id"])
        return LabelWords(
            labels, types, build_id=build["id"], source=build["source"], checksum=build["checksum"]
        )
