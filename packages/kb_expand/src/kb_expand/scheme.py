"""Label schemes: which labels are expanded, their coarse entity type (PER/LOC/ORG/MISC) and seed terms.

A scheme is a JSON file {"name", "description", "labels": [{"label", "type", "seeds": [...]}, ...]}; the
default one ships in `kb_expand/schemes/default.json` and `--scheme FILE` replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .errors import InputError, read_json_file
from .text import normalize

ENTITY_TYPES = ("PER", "LOC", "ORG", "MISC")


@dataclass(frozen=True)
class LabelSpec:
    label: str  # the label as it is expanded and stored, lower case ("person", "work of art")
    entity_type: str  # coarse type the label rewrites: one of ENTITY_TYPES
    seeds: tuple[str, ...]  # seed terms queried in the knowledge bases (the label itself is always included)


@dataclass(frozen=True)
class Scheme:
    name: str  # scheme name recorded with every build
    labels: tuple[LabelSpec, ...]  # labels in output order
    description: str = ""  # free text
    path: str = ""  # file it was read from ("" for in-memory schemes)
    raw: dict = field(default_factory=dict, compare=False, repr=False)  # the parsed JSON, for checksums

    def entity_types(self) -> dict[str, str]:
        return {spec.label: spec.entity_type for spec in self.labels}

    def get(self, label: str) -> LabelSpec:
        for spec in self.labels:
            if spec.label == label:
                return spec
        raise KeyError(label)


def default_scheme_path() -> Path:
    """Path of the scheme shipped with the package."""
    return Path(str(resources.files("kb_expand") / "schemes" / "default.json"))


def parse_scheme(data: object, path: str = "<scheme>") -> Scheme:
    """Validate parsed JSON into a Scheme; errors name the file and the offending label."""
    if not isinstance(data, dict) or not isinstance(data.get("labels"), list) or not data["labels"]:
        raise InputError(path, 'a scheme is a JSON object with a non-empty "labels" list')
    specs: list[LabelSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(data["labels"]):
        if not isinstance(item, dict) or not isinstance(item.get("label"), str) or not item["label"].strip():
            raise InputError(path, f'labels[{i}] needs a non-empty string "label"')
        label = normalize(item["label"])
        etype = str(item.get("type", "")).upper()
        if etype not in ENTITY_TYPES:
            raise InputError(
                path, f'label "{label}": type must be one of {", ".join(ENTITY_TYPES)}, got {etype!r}'
            )
        seeds = item.get("seeds", [])
        if not isinstance(seeds, list) or not all(isinstance(s, str) and s.strip() for s in seeds):
            raise InputError(path, f'label "{label}": "seeds" must be a list of strings')
        if label in seen:
            raise InputError(path, f'label "{label}" appears twice')
        seen.add(label)
        ordered = [label] + [normalize(s) for s in seeds]
        specs.append(LabelSpec(label, etype, tuple(dict.fromkeys(ordered))))
    return Scheme(
        str(data.get("name", Path(path).stem)), tuple(specs), str(data.get("description", "")), path, data
    )


def load_scheme(path: str | Path | None = None) -> Scheme:
    """Read a scheme file (None: the shipped default)."""
    p = Path(path) if path is not None else default_scheme_path()
    return parse_scheme(read_json_file(p, "scheme"), str(p))
