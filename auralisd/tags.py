"""Tags and cover art from every container the library holds (blocking; run on a thread).

One reader for all of them through mutagen: ID3 (MP3, and ID3 chunks in WAV and AIFF), MP4
atoms (``.m4a``), Vorbis comments (FLAC, Ogg Vorbis, Opus), APEv2 (WavPack, Monkey's Audio,
some MP3s) and ASF (WMA). WAV's RIFF ``LIST/INFO`` chunk, which mutagen does not read, is
parsed here; an ID3 value wins over an INFO one. Every container's keys are folded onto one
set of fields through :data:`_ALIASES` (lower-cased key -> field).

Tags are optional: a file whose tags cannot be read has none, it is never rejected for that.
Cover art is the embedded picture (the front cover when the file says which), else a
``cover.*`` or ``folder.*`` image beside the file; images larger than :data:`MAX_COVER_BYTES`
are not served.
"""

from __future__ import annotations

import base64
import logging
import os
import struct
from dataclasses import dataclass
from typing import Any, Final

log = logging.getLogger("auralisd.tags")

MAX_COVER_BYTES: Final = 8 * 1024 * 1024  # larger pictures are not served
MAX_TAG_CHARS: Final = 1024  # a longer value is cut (a tag is a label, not a document)
MAX_INFO_CHUNK_BYTES: Final = 64 * 1024  # a RIFF LIST/INFO chunk larger than this is not read
COVER_NAMES: Final = ("cover", "folder", "front", "album")  # file stems beside the audio, in order
COVER_EXTENSIONS: Final = (".jpg", ".jpeg", ".png", ".webp", ".gif")

FIELDS: Final = (
    "title", "artist", "album", "album_artist", "track_number", "disc_number", "date", "genre", "mb_album_id",
    "composer", "performer", "comment",
)  # fmt: skip

# lower-cased container key -> field. ID3 frame ids, MP4 atoms, Vorbis/APE/ASF names.
_ALIASES: Final[dict[str, str]] = {
    # title
    "tit2": "title", "\xa9nam": "title", "title": "title",
    # artist
    "tpe1": "artist", "\xa9art": "artist", "artist": "artist", "author": "artist",
    # album
    "talb": "album", "\xa9alb": "album", "album": "album", "wm/albumtitle": "album",
    # album artist
    "tpe2": "album_artist", "aart": "album_artist", "albumartist": "album_artist", "album artist": "album_artist",
    "album_artist": "album_artist", "wm/albumartist": "album_artist",
    # track and disc
    "trck": "track_number", "trkn": "track_number", "tracknumber": "track_number", "track": "track_number",
    "wm/tracknumber": "track_number",
    "tpos": "disc_number", "disk": "disc_number", "discnumber": "disc_number", "disc": "disc_number",
    "wm/partofset": "disc_number",
    # date
    "tdrc": "date", "tyer": "date", "\xa9day": "date", "date": "date", "year": "date", "wm/year": "date",
    # genre
    "tcon": "genre", "\xa9gen": "genre", "genre": "genre", "wm/genre": "genre",
    # composer, performer, comment (ID3 COMM frames are keyed "COMM:description:language"; only the one without a description counts)
    "tcom": "composer", "\xa9wrt": "composer", "composer": "composer", "wm/composer": "composer",
    "performer": "performer", "\xa9prf": "performer",
    "comm": "comment", "\xa9cmt": "comment", "comment": "comment", "description": "comment",
    # MusicBrainz release id
    "txxx:musicbrainz album id": "mb_album_id", "----:com.apple.itunes:musicbrainz album id": "mb_album_id",
    "musicbrainz_albumid": "mb_album_id", "musicbrainz/album id": "mb_album_id",
}  # fmt: skip

# RIFF INFO chunk ids -> field (WAV files written by many rippers and editors)
_RIFF_INFO: Final[dict[bytes, str]] = {
    b"INAM": "title", b"IART": "artist", b"IPRD": "album", b"ICRD": "date", b"IGNR": "genre",
    b"ITRK": "track_number", b"IPRT": "track_number", b"ICMT": "comment",
}  # fmt: skip


@dataclass(frozen=True)
class Tags:
    """What a file's tags say; ``None`` where they say nothing."""

    title: str | None = None
    artist: str | None = None
    album: str | None = None
    album_artist: str | None = None
    track_number: int | None = None
    disc_number: int | None = None
    date: str | None = None
    genre: str | None = None
    mb_album_id: str | None = None
    composer: str | None = None
    performer: str | None = None
    comment: str | None = None


def read_tags(path: str) -> Tags:
    """The tags of ``path`` (blocking). Never raises for a bad or tagless file: it has no tags."""
    found: dict[str, str] = {}
    meta = _open(path)
    if meta is not None and meta.tags is not None:
        try:
            items = list(meta.tags.items())
        except Exception:  # mutagen raises many kinds on odd files; tags are optional
            items = []
        for key, value in items:
            field = _field_of(str(key))
            if field is None or field in found:
                continue
            text = _text_of(value)
            if text:
                found[field] = text[:MAX_TAG_CHARS]
    for field, text in _riff_info(path).items():
        found.setdefault(field, text[:MAX_TAG_CHARS])
    return Tags(
        title=found.get("title"),
        artist=found.get("artist"),
        album=found.get("album"),
        album_artist=found.get("album_artist"),
        track_number=_leading_int(found.get("track_number")),
        disc_number=_leading_int(found.get("disc_number")),
        date=found.get("date"),
        genre=found.get("genre"),
        mb_album_id=found.get("mb_album_id"),
        composer=found.get("composer"),
        performer=found.get("performer"),
        comment=found.get("comment"),
    )


def read_cover(path: str, max_bytes: int = MAX_COVER_BYTES) -> tuple[bytes, str] | None:
    """``(image bytes, content type)``: the embedded picture, else ``cover.*``/``folder.*`` beside
    the file; None when there is none (or only one larger than ``max_bytes``)."""
    return read_embedded_cover(path, max_bytes) or _cover_beside(path, max_bytes)


def read_embedded_cover(path: str, max_bytes: int = MAX_COVER_BYTES) -> tuple[bytes, str] | None:
    """The picture embedded in the file (the front cover when marked) and its content type; None
    when there is none we serve (MPD's ``readpicture``)."""
    picture = _embedded_picture(path)
    if picture is not None and len(picture) <= max_bytes:
        kind = image_type(picture)
        if kind is not None:
            return picture, kind
    return None


def read_folder_cover(path: str, max_bytes: int = MAX_COVER_BYTES) -> tuple[bytes, str] | None:
    """``cover.*``/``folder.*``/``front.*``/``album.*`` beside the file (MPD's ``albumart``); None when there is none."""
    return _cover_beside(path, max_bytes)


def image_type(data: bytes) -> str | None:
    """The content type of an image by its magic bytes (never by a name); None if not an image we serve."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


# ----------------------------------------------------------------- containers
def _open(path: str) -> Any:
    import mutagen

    try:
        return mutagen.File(path)
    except Exception:  # not a container mutagen knows, or a damaged one: no tags
        return None


def _field_of(key: str) -> str | None:
    lowered = key.lower()
    field = _ALIASES.get(lowered)
    if field is None and lowered.startswith("txxx:"):
        field = _ALIASES.get("txxx:" + lowered[5:].strip())
    if field is None and lowered.startswith("comm::"):  # the plain comment, not iTunNORM and friends
        field = "comment"
    return field


def _text_of(value: Any) -> str | None:
    """The first value of a tag, as text, whatever the container's value type."""
    if isinstance(value, list):
        if not value:
            return None
        value = value[0]
    genres = getattr(value, "genres", None)  # ID3 TCON resolves "(17)" to "Rock"
    if genres:
        value = genres[0]
    elif hasattr(value, "text") and isinstance(value.text, list):  # other ID3 text frames
        if not value.text:
            return None
        value = value.text[0]
    elif hasattr(value, "value") and not isinstance(value, (str, bytes)):  # ASF attributes, APE values
        value = value.value
    if isinstance(value, tuple):  # MP4 trkn/disk: (number, total)
        value = value[0] if value else None
    if isinstance(value, (bytes, bytearray)):  # MP4 freeform atoms ("----:...") hold UTF-8 bytes
        value = bytes(value).decode("utf-8", "replace")
    if value is None:
        return None
    text = str(value).replace("\x00", " ").strip()
    return text or None


def _leading_int(text: str | None) -> int | None:
    """``"3/12"`` -> 3, ``"03"`` -> 3; None when the text does not start with a number."""
    if not text:
        return None
    digits = ""
    for ch in text.strip():
        if not ch.isdigit() or not ch.isascii():
            break
        digits += ch
    if not digits:
        return None
    number = int(digits[:9])
    return number if number > 0 else None


def _riff_info(path: str) -> dict[str, str]:
    """The ``LIST/INFO`` fields of a RIFF/WAVE file (bounded reads; any error: none)."""
    out: dict[str, str] = {}
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
                return out
            for _ in range(64):  # a WAV holds a handful of chunks; stop on a runaway
                chunk = f.read(8)
                if len(chunk) < 8:
                    break
                chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if chunk_id == b"LIST" and size <= MAX_INFO_CHUNK_BYTES:
                    body = f.read(size)
                    if body[:4] == b"INFO":
                        out.update(_parse_info(body[4:]))
                else:
                    f.seek(size, os.SEEK_CUR)
                if size % 2:
                    f.seek(1, os.SEEK_CUR)
    except OSError:
        return {}
    return out


def _parse_info(body: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos + 8 <= len(body):
        sub_id, size = body[pos : pos + 4], struct.unpack("<I", body[pos + 4 : pos + 8])[0]
        raw = body[pos + 8 : pos + 8 + size]
        pos += 8 + size + (size % 2)
        field = _RIFF_INFO.get(sub_id)
        if field is None or field in out:
            continue
        raw = raw.split(b"\x00", 1)[0]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")  # INFO predates UTF-8; Latin-1 is what old writers used
        text = text.strip()
        if text:
            out[field] = text
    return out


# ----------------------------------------------------------------- cover art
def _embedded_picture(path: str) -> bytes | None:
    meta = _open(path)
    if meta is None:
        return None
    pictures: list[tuple[int, bytes]] = []  # (picture type, data); type 3 is the front cover
    for picture in getattr(meta, "pictures", None) or []:  # FLAC
        pictures.append((int(getattr(picture, "type", 0)), bytes(picture.data)))
    tags = meta.tags
    if tags is not None:
        try:
            items = list(tags.items())
        except Exception:
            items = []
        for key, value in items:
            lowered = str(key).lower()
            values = value if isinstance(value, list) else [value]
            if lowered.startswith("apic"):  # ID3
                for frame in values:
                    pictures.append((int(getattr(frame, "type", 0)), bytes(frame.data)))
            elif lowered == "covr":  # MP4
                pictures += [(3, bytes(cover)) for cover in values]
            elif lowered == "metadata_block_picture":  # Vorbis comments (Ogg)
                pictures += [p for p in (_vorbis_picture(v) for v in values) if p is not None]
            elif lowered.startswith("cover art"):  # APEv2: "name\0data"
                for item in values:
                    data = bytes(getattr(item, "value", b"") or b"")
                    if b"\x00" in data:
                        pictures.append((3 if "front" in lowered else 0, data.split(b"\x00", 1)[1]))
            elif lowered == "wm/picture":  # ASF
                pictures += [p for p in (_asf_picture(v) for v in values) if p is not None]
    if not pictures:
        return None
    front = [data for kind, data in pictures if kind == 3]
    return (front or [data for _, data in pictures])[0]


def _vorbis_picture(value: Any) -> tuple[int, bytes] | None:
    from mutagen.flac import Picture

    try:
        picture = Picture(base64.b64decode(str(value)))
    except Exception:
        return None
    return int(picture.type), bytes(picture.data)


def _asf_picture(value: Any) -> tuple[int, bytes] | None:
    """WM/Picture: type (1 byte), size (4), MIME and description (UTF-16 NUL-terminated), data."""
    data = bytes(getattr(value, "value", b"") or b"")
    if len(data) < 5:
        return None
    kind = data[0]
    pos = 5
    for _ in range(2):  # MIME type, then description
        end = pos
        while end + 1 < len(data) and data[end : end + 2] != b"\x00\x00":
            end += 2
        pos = end + 2
    return (kind, data[pos:]) if pos < len(data) else None


def _cover_beside(path: str, max_bytes: int) -> tuple[bytes, str] | None:
    folder = os.path.dirname(path) or "."
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    by_stem: dict[str, str] = {}
    for name in sorted(names):
        stem, ext = os.path.splitext(name)
        if ext.lower() in COVER_EXTENSIONS and stem.lower() in COVER_NAMES:
            by_stem.setdefault(stem.lower(), name)
    for stem in COVER_NAMES:
        cover_name = by_stem.get(stem)
        if cover_name is None:
            continue
        try:
            with open(os.path.join(folder, cover_name), "rb") as f:
                data = f.read(max_bytes + 1)
        except OSError:
            continue
        kind = image_type(data)
        if len(data) <= max_bytes and kind is not None:
            return data, kind
    return None
