"""Reading Visual Genome: the streaming JSON reader and the object co-occurrence graph the `visualgenome`
source (visualgenome.py) expands labels over.

Input: VG `relationships.json` ([{image_id, relationships: [{predicate, subject: {name|names}, object: ...}]}])
or `scene_graphs.json` ([{image_id, objects: [{object_id, names}], relationships: [{subject_id, object_id}]}]),
plain, .gz or .zip. The top-level array is decoded one image at a time (json.JSONDecoder.raw_decode over
1 MiB chunks), so memory is bounded by the graph (distinct names and pairs), not by the file (~2.3M relations).

Graph (networkx): nodes = object names (attribute `count`), undirected edges weighted by the number of
relationships connecting the two names.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from ..errors import InputError
from ..text import normalize

CHUNK = 1 << 20


class _Progress:
    """Byte progress of the underlying (compressed) file."""

    def __init__(self, raw, total: int, desc: str, enabled: bool):
        from tqdm import tqdm

        self.raw = raw
        self.bar = tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=not enabled)

    def tick(self) -> None:
        try:
            pos = self.raw.tell()
        except (OSError, ValueError):
            return
        self.bar.update(max(0, pos - self.bar.n))

    def close(self) -> None:
        self.tick()
        self.bar.close()


def _open(path: Path) -> tuple[io.TextIOBase, object, int]:
    """(text stream, raw file for progress, total bytes of raw)."""
    if path.name.endswith(".zip"):
        zf = zipfile.ZipFile(path)
        members = [m for m in zf.infolist() if m.filename.endswith(".json")]
        if not members:
            raise InputError(path, "zip archive holds no .json member")
        member = zf.open(members[0])
        return io.TextIOWrapper(member, encoding="utf-8"), member._fileobj, os.path.getsize(path)  # type: ignore[attr-defined]
    raw = open(path, "rb")
    stream = gzip.GzipFile(fileobj=raw) if path.name.endswith(".gz") else raw
    return io.TextIOWrapper(stream, encoding="utf-8"), raw, os.path.getsize(path)


def iter_json_array(path: str | Path, progress: bool = False, chunk: int = CHUNK) -> Iterator[object]:
    """Yield the elements of a top-level JSON array one at a time, reading `chunk` characters at a time.

    Errors name the file and the line of the element that failed to parse.
    """
    p = Path(path)
    try:
        text, raw, total = _open(p)
    except (OSError, zipfile.BadZipFile) as e:
        raise InputError(p, f"cannot read Visual Genome file: {e}") from e
    bar = _Progress(raw, total, f"visualgenome {p.name}", progress)
    decoder = json.JSONDecoder()
    buf, pos, line, eof = "", 0, 1, False

    def more() -> bool:
        nonlocal buf, pos, line, eof
        if eof:
            return False
        try:
            data = text.read(chunk)
        except (UnicodeDecodeError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise InputError(p, f"unreadable Visual Genome file ({e})", line=line) from e
        bar.tick()
        if not data:
            eof = True
            return False
        line += buf.count("\n", 0, pos)
        buf, pos = buf[pos:] + data, 0
        return True

    def skip_ws() -> bool:
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            if pos < len(buf):
                return True
            if not more():
                return False

    try:
        if not skip_ws() or buf[pos] != "[":
            raise InputError(p, "expected a JSON array of images ('[' ...)", line=line)
        pos += 1
        first = True
        while True:
            if not skip_ws():
                raise InputError(p, "truncated JSON: the top-level array is not closed", line=line + buf.count("\n", 0, pos))  # fmt: skip
            if buf[pos] == "]":
                return
            if not first:
                if buf[pos] != ",":
                    raise InputError(p, f"expected ',' between array elements, got {buf[pos]!r}", line=line + buf.count("\n", 0, pos))  # fmt: skip
                pos += 1
                if not skip_ws():
                    raise InputError(p, "truncated JSON after ','", line=line + buf.count("\n", 0, pos))
            first = False
            while True:
                try:
                    obj, end = decoder.raw_decode(buf, pos)
                    break
                except json.JSONDecodeError as e:
                    if not more():
                        raise InputError(
                            p, f"invalid JSON: {e.msg}", line=line + buf.count("\n", 0, e.pos)
                        ) from e
            pos = end
            yield obj
    finally:
        bar.close()
        text.close()


def _name(obj: object) -> str | None:
    if not isinstance(obj, dict):
        return None
    name = obj.get("name")
    if name is None and isinstance(obj.get("names"), list) and obj["names"]:
        name = obj["names"][0]
    return normalize(name) if isinstance(name, str) and name.strip() else None


def iter_relation_pairs(path: str | Path, progress: bool = False) -> Iterator[tuple[str, str]]:
    """(subject name, object name) of every relationship, from relationships.json or scene_graphs.json."""
    for i, image in enumerate(iter_json_array(path, progress)):
        if not isinstance(image, dict) or not isinstance(image.get("relationships"), list):
            raise InputError(path, f"array element {i} is not an image with a 'relationships' list")
        objects = None
        if isinstance(image.get("objects"), list):  # scene_graphs.json: relationships refer to object ids
            objects = {o.get("object_id"): _name(o) for o in image["objects"] if isinstance(o, dict)}
        for rel in image["relationships"]:
            if not isinstance(rel, dict):
                continue
            if "subject" in rel or "object" in rel:
                s, o = _name(rel.get("subject")), _name(rel.get("object"))
            elif objects is not None:
                s, o = objects.get(rel.get("subject_id")), objects.get(rel.get("object_id"))
            else:
                raise InputError(
                    path, f"image {image.get('image_id', i)}: relationship without subject/object"
                )
            if s and o:
                yield s, o


def build_graph(path: str | Path, progress: bool = False):
    """networkx Graph of object names: node attr `count` (objects seen in relationships), edge attr `weight`.

    Returns (graph, number of relationships read)."""
    import networkx as nx

    names: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    n = 0
    intern: dict[str, str] = {}
    for s, o in iter_relation_pairs(path, progress):
        s = intern.setdefault(s, s)
        o = intern.setdefault(o, o)
        n += 1
        names[s] += 1
        names[o] += 1
        if s != o:
            pairs[(s, o) if s < o else (o, s)] += 1
    g = nx.Graph()
    g.add_nodes_from((name, {"count": c}) for name, c in names.items())
    g.add_weighted_edges_from((a, b, w) for (a, b), w in pairs.items())
    return g, n
