"""The Twitter MNER data layer: reading the benchmark files exactly as the literature counts them.

This module owns the CoNLL-style reader (`IMGID:` lines, TAB-separated token/tag lines, blank lines between
tweets), tag normalisation (`OTHER` -> `MISC`), the conlleval chunking rule that turns BIO tags into entity spans,
the lookup of datasets by name in a data directory and of tweet images in an image directory.

Facts honoured (see ``shared/data/README.md``): Twitter-2015 files do not end with a blank line (the last tweet
is still read); an ``I-`` tag that follows ``O`` or another type opens an entity (conlleval / seqeval default);
files are UTF-8 with emoji and odd tokens.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from catmner_model.errors import CatmnerError

ENTITY_TYPES: tuple[str, ...] = ("PER", "LOC", "ORG", "MISC")
LABELS: tuple[str, ...] = ("O", *ENTITY_TYPES)  # span classes; index 0 is "not an entity"
DATASETS: tuple[str, ...] = ("twitter2015", "twitter2017")
SPLITS: tuple[str, ...] = ("train", "valid", "test")
TAG_ALIASES: dict[str, str] = {"OTHER": "MISC"}
IMAGE_SUFFIX = ".jpg"
_IMGID_RE = re.compile(r"^[A-Za-z0-9_\-]+$")

# Public text splits, as distributed with the UMT code release (Yu et al., ACL 2020).
DOWNLOAD_BASE_URL = "https://raw.githubusercontent.com/jefferyYu/UMT/master/data"
_DOWNLOAD_DIRS = {"twitter2015": "twitter2015", "twitter2017": "twitter2017"}


class DataError(CatmnerError):
    """Bad input data; the message names the file and, where it applies, the line."""


@dataclass(frozen=True)
class Entity:
    """One entity mention: words ``start`` .. ``end - 1`` of a tweet, of type ``type``."""

    start: int  # index of the first word
    end: int  # index one past the last word (exclusive)
    type: str  # one of ENTITY_TYPES
    score: float | None = field(default=None, compare=False)  # model confidence, predictions only

    @property
    def key(self) -> tuple[int, int, str]:
        """The identity used for scoring: (start, end, type)."""
        return (self.start, self.end, self.type)


@dataclass
class Tweet:
    """One tweet: its tokens, normalised BIO tags, gold entities and image id."""

    imgid: str  # the IMGID: the image is <imgid>.jpg
    tokens: list[str]  # whitespace-free tokens as in the file
    tags: list[str]  # BIO tags, OTHER normalised to MISC
    entities: list[Entity]  # gold entities built with the conlleval rule
    path: str = ""  # file the tweet was read from
    line: int = 0  # 1-based line number of its IMGID line (or first token line)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def where(self) -> str:
        """``file:line`` of the tweet ("" for a tweet made in memory), for messages."""
        return f"{self.path}:{self.line}" if self.path else ""


def split_lines(text: str) -> list[str]:
    """The lines of a text file, split on ``\n`` only (a ``\r`` before it dropped), never on the other
    characters `str.splitlines` breaks at (U+2028, U+0085, form feed, ...), which can sit inside a JSON string
    or a token. A final newline does not make an empty last line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_text_lines(path: str | os.PathLike[str], error: type[CatmnerError], what: str) -> list[str]:
    """The lines of a user's UTF-8 text file (a BOM dropped, split by `split_lines`); a missing file, a
    directory, non-UTF-8 bytes or a read failure is one ``error`` line naming the file (``what``: "a caption
    file", "a JSONL file", ...)."""
    p = Path(path)
    try:
        return split_lines(p.read_bytes().decode("utf-8-sig"))
    except FileNotFoundError:
        raise error(f"{p}: not found, expected {what}") from None
    except IsADirectoryError:
        raise error(f"{p}: is a directory, expected {what}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise error(f"{p}: cannot read ({exc.strerror or exc})") from None


def visible(text: str) -> str:
    """``text`` as a reader sees it: format characters (zero-width space and joiners, BOM, bidi marks, soft
    hyphen) and non-whitespace control characters removed; whitespace (including U+2028, U+0085) kept, so it
    still separates words. Tokens are made from this, so invisible characters never become or join tokens."""
    if text.isprintable():  # the common case: nothing to remove
        return text
    return "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf"))


def _split_tag(tag: str) -> tuple[str, str]:
    """Return (prefix, type) of a BIO tag; ``O`` gives ("O", "")."""
    if tag == "O":
        return "O", ""
    prefix, _, etype = tag.partition("-")
    return prefix, etype


def normalise_tag(tag: str, where: str = "") -> str:
    """Map a raw tag to the scheme (``OTHER`` -> ``MISC``); raise DataError for an unknown one."""
    if tag == "O":
        return tag
    prefix, sep, etype = tag.partition("-")
    etype = TAG_ALIASES.get(etype, etype)
    if not sep or prefix not in ("B", "I") or etype not in ENTITY_TYPES:
        raise DataError(
            f"{where}: unknown tag {tag!r} (expected O or B-/I- with one of {', '.join(ENTITY_TYPES)}, or OTHER)"
        )
    return f"{prefix}-{etype}"


def tags_to_entities(tags: Sequence[str], mode: str = "conlleval") -> list[Entity]:
    """Chunk BIO tags into entities.

    ``mode="conlleval"`` (the literature's, seqeval's default): an ``I-X`` that does not continue an ``X`` entity
    opens a new one. ``mode="strict"`` (IOB2): only ``B-X`` opens an entity; a stray ``I-X`` is not an entity.
    """
    if mode not in ("conlleval", "strict"):
        raise ValueError(f"unknown chunking mode {mode!r}: use 'conlleval' or 'strict'")
    entities: list[Entity] = []
    start, etype = -1, ""
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, t = _split_tag(tag)
        continues = prefix == "I" and start >= 0 and t == etype
        if start >= 0 and not continues:
            entities.append(Entity(start, i, etype))
            start, etype = -1, ""
        if prefix == "B" or (prefix == "I" and not continues and mode == "conlleval"):
            start, etype = i, t
    return entities


def entities_to_tags(entities: Iterable[Entity], n: int) -> list[str]:
    """Write entities as IOB2 tags over ``n`` words (entities must not overlap)."""
    tags = ["O"] * n
    for e in sorted(entities, key=lambda e: e.start):
        if not 0 <= e.start < e.end <= n:
            raise ValueError(f"entity {e} out of range for {n} words")
        if any(t != "O" for t in tags[e.start : e.end]):
            raise ValueError(f"entity {e} overlaps another entity")
        tags[e.start] = f"B-{e.type}"
        for i in range(e.start + 1, e.end):
            tags[i] = f"I-{e.type}"
    return tags


def read_conll(path: str | os.PathLike[str], *, extra_columns: bool = False) -> list[Tweet]:
    """Read a Twitter MNER file into tweets.

    With ``extra_columns=True`` lines may carry more TAB-separated columns after the tag (they are ignored here;
    the predictions reader uses them). Raises DataError naming file and line on malformed input.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{p}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{p}: is a directory, expected a CoNLL file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_no = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{p}:{line_no}: not valid UTF-8 (byte 0x{raw[exc.start]:02x})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    tweets: list[Tweet] = []
    imgid: str | None = None
    tokens: list[str] = []
    tags: list[str] = []
    first_line = 0

    def flush() -> None:
        nonlocal imgid, tokens, tags, first_line
        if tokens:
            tweets.append(
                Tweet(
                    imgid=imgid or "",
                    tokens=tokens,
                    tags=tags,
                    entities=tags_to_entities(tags),
                    path=str(p),
                    line=first_line,
                )
            )
        elif imgid is not None:
            raise DataError(f"{p}:{first_line}: IMGID:{imgid} has no tokens")
        imgid, tokens, tags, first_line = None, [], [], 0

    for line_no, line in enumerate(split_lines(text), start=1):
        if not line.strip():
            flush()
            continue
        if line.startswith("IMGID:"):
            if tokens or imgid is not None:
                flush()
            imgid = line[len("IMGID:") :].strip()
            first_line = line_no
            continue
        cols = line.split("\t")
        if len(cols) < 2 or (len(cols) > 2 and not extra_columns):
            raise DataError(
                f"{p}:{line_no}: expected 'token<TAB>tag', got {len(cols)} column(s): {line[:60]!r}"
            )
        token, tag = visible(cols[0]).strip(), normalise_tag(cols[1].strip(), f"{p}:{line_no}")
        if token == "":
            if cols[0] and tag == "O":  # only invisible characters (zero-width space, BOM...): not a token
                continue
            raise DataError(f"{p}:{line_no}: empty token (or only invisible characters)")
        if space := next((ch for ch in token if ch.isspace()), None):  # U+2028, a lone CR, NBSP...
            raise DataError(
                f"{p}:{line_no}: token {token[:40]!r} holds whitespace (U+{ord(space):04X}): one token per line, "
                "a TAB before its tag"
            )
        if not tokens and imgid is None:
            first_line = line_no
        tokens.append(token)
        tags.append(tag)
    flush()
    if not tweets:
        raise DataError(f"{p}: no tweets found (empty file?)")
    return tweets


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: the argument, else ``$CATMNER_DATA``, else ``$CATMNER_HOME/data`` (~/.catmner/data)."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get("CATMNER_DATA"):
        return Path(os.environ["CATMNER_DATA"]).expanduser()
    return catmner_home() / "data"


def catmner_home() -> Path:
    """The user directory for models, caches and data: ``$CATMNER_HOME`` or ``~/.catmner`` (one resolver for
    every package: kb_expand's, which the label-word store also uses)."""
    from kb_expand.paths import catmner_home as resolve

    return resolve()


def resolve_image_dir(
    image_dir: str | os.PathLike[str] | None = None, data_dir: str | os.PathLike[str] | None = None
) -> Path | None:
    """The image directory: the argument, else ``$CATMNER_IMAGES``, else ``<data_dir>/tweet_images`` if it exists.

    It holds ``twitter2015_images/`` and ``twitter2017_images/``. None when no image directory is known.
    """
    if image_dir:
        return Path(image_dir).expanduser()
    if os.environ.get("CATMNER_IMAGES"):
        return Path(os.environ["CATMNER_IMAGES"]).expanduser()
    candidate = resolve_data_dir(data_dir) / "tweet_images"
    return candidate if candidate.is_dir() else None


def _check_name(value: str, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise DataError(f"unknown {what} {value!r}: choose one of {', '.join(allowed)}")


def split_path(dataset: str, split: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of ``<data_dir>/<dataset>/<split>.txt`` (not checked for existence)."""
    _check_name(dataset, DATASETS, "dataset")
    _check_name(split, SPLITS, "split")
    return resolve_data_dir(data_dir) / dataset / f"{split}.txt"


def load_split(dataset: str, split: str, data_dir: str | os.PathLike[str] | None = None) -> list[Tweet]:
    """Read one split of a benchmark by name, e.g. ``load_split("twitter2015", "test")``."""
    path = split_path(dataset, split, data_dir)
    if not path.exists():
        raise DataError(
            f"{path}: not found. Point --data-dir or CATMNER_DATA at a folder holding {dataset}/{split}.txt "
            f"(`catmner data download {dataset}` fetches the public splits)."
        )
    return read_conll(path)


def check_imgid(imgid: str, where: str = "") -> str:
    """Refuse an IMGID that could escape the image directory (``../``, absolute paths, separators)."""
    prefix = f"{where}: " if where else ""
    if not imgid:
        raise DataError(
            f"{prefix}unsafe or invalid IMGID '': the tweet has no IMGID line (expected 'IMGID:<id>')"
        )
    if not _IMGID_RE.match(imgid):
        raise DataError(f"{prefix}unsafe or invalid IMGID {imgid!r} (letters, digits, '_' and '-' only)")
    return imgid


def image_path(
    dataset: str, imgid: str, image_dir: str | os.PathLike[str] | None, where: str = ""
) -> Path | None:
    """``<image_dir>/<dataset>_images/<imgid>.jpg`` if that file exists, else None (a missing image is normal).

    Raises DataError for an IMGID that would escape the image directory (naming ``where``: file and line).
    """
    check_imgid(imgid, where)
    if image_dir is None:
        return None
    root = Path(image_dir) / f"{dataset}_images"
    path = root / f"{imgid}{IMAGE_SUFFIX}"
    if path.resolve().parent != root.resolve():  # symlinked escapes too
        raise DataError(f"{path}: image resolves outside {root}")
    return path if path.is_file() else None


def dataset_stats(
    dataset: str,
    data_dir: str | os.PathLike[str] | None = None,
    image_dir: str | os.PathLike[str] | None = None,
    splits: Sequence[str] = SPLITS,
) -> dict:
    """Per split: tweets, tokens, entities overall and per type (both chunking modes), images found/missing."""
    images = resolve_image_dir(image_dir, data_dir)
    out: dict = {"dataset": dataset, "data_dir": str(resolve_data_dir(data_dir)), "image_dir": str(images)}
    out["splits"] = {}
    for split in splits:
        tweets = load_split(dataset, split, data_dir)
        strict = sum(len(tags_to_entities(t.tags, "strict")) for t in tweets)
        per_type = {k: 0 for k in ENTITY_TYPES}
        for t in tweets:
            for e in t.entities:
                per_type[e.type] += 1
        found = sum(image_path(dataset, t.imgid, images, t.where) is not None for t in tweets)
        out["splits"][split] = {
            "tweets": len(tweets),
            "tokens": sum(len(t) for t in tweets),
            "entities": sum(per_type.values()),
            "entities_strict": strict,
            "per_type": per_type,
            "images_found": found,
            "images_missing": len(tweets) - found,
        }
    return out


def download_dataset(
    dataset: str,
    data_dir: str | os.PathLike[str] | None = None,
    base_url: str = DOWNLOAD_BASE_URL,
    timeout: float = 30.0,
) -> list[Path]:
    """Fetch the public text splits of ``dataset`` into ``<data_dir>/<dataset>/`` (needs the internet).

    Each file is validated with the reader before it atomically replaces anything. Raises DataError with one
    clear line when the service cannot be reached.
    """
    import requests

    _check_name(dataset, DATASETS, "dataset")
    target = resolve_data_dir(data_dir) / dataset  # created once a file has arrived
    written = []
    for split in SPLITS:
        url = f"{base_url.rstrip('/')}/{_DOWNLOAD_DIRS[dataset]}/{split}.txt"
        try:
            resp = requests.get(url, timeout=timeout)
            resp.raise_for_status()
        except requests.RequestException as exc:
            raise DataError(f"{url}: download failed ({type(exc).__name__}); are you online?") from None
        dest = target / f"{split}.txt"
        tmp = dest.with_suffix(".txt.part")
        target.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(resp.content)
        try:
            read_conll(tmp)
        except DataError as exc:
            tmp.unlink(missing_ok=True)
            raise DataError(f"{url}: downloaded file is not a valid split ({exc})") from None
        os.replace(tmp, dest)
        written.append(dest)
    return written
