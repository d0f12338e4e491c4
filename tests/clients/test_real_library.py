"""A messy real library through a real daemon and auralisctl (issue 9, items 2-4).

Built here with ffmpeg and mutagen: every common container with tags and cover art (FLAC,
MP3 with ID3 + APIC, M4A with covr, Ogg Vorbis and Opus with Vorbis comments, WAV with an ID3
chunk, WAV with RIFF INFO only, AIFF with ID3, WavPack with APEv2, WMA with ASF attributes and
WM/Picture), a damaged FLAC, a text
file and pictures, Latin-1 file and folder names beside 1,000 plain files, and a hidden file.
Checked end to end: the scan's counts add up to the files on disk, ``rejected`` names every
file it could not use, tags and album order, cover art over HTTP, folded search that never
cuts in silence, and a printed non-UTF-8 path given back to ``add`` and played.

Each file is expected to be a track exactly when ``auralis.audio.probe`` decodes it in this
process, and listed as unsupported otherwise; and every container here must decode (M4A, WavPack
and WMA through the FFmpeg decoder).
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from auralis.audio import probe
from auralis.errors import AudioError
from clients import auralisctl
from tests.service.daemon_process import free_port, start_daemon

pytestmark = pytest.mark.skipif(subprocess.run(["which", "ffmpeg"], capture_output=True).returncode != 0,
                                reason="ffmpeg is not installed")  # fmt: skip

BULK = 1000
RATE = 44_100
TAGS = {"artist": "Björk", "album": "Homogenic", "album_artist": "Various", "disc": "1/1", "date": "1997",
        "genre": "Electronic"}  # fmt: skip
# name -> track number (names sort differently from the numbers, so album order shows)
FORMATS = {"a.flac": 9, "b.mp3": 8, "c.m4a": 7, "d.ogg": 6, "e.opus": 5, "f_id3.wav": 4, "g.aiff": 3, "h.wv": 2,
           "i.wma": 1}
MB_ALBUM = "2d9b0a9c-1111-4e4e-9d9d-000000000001"
LATIN1_DIR = os.fsdecode(b"Bj\xf6rk")
LATIN1_FILE = os.fsdecode(b"caf\xe9.flac")
# Messy/: what a real folder also holds. name -> what the library makes of it (a track, or rejected)
NEWLINE = "new\nline.flac"
MESSY = {"id3v1.mp3": "track", NEWLINE: "track", "it's \"quoted\" \U0001f3b5.flac": "track", "blip.flac": "track",
         "outside.flac": "track", "cut.flac": "track", "shrinks.flac": "track", "empty.flac": "damaged", "lyrics.mp3": "unsupported"}  # fmt: skip
CUT_FULL_S = 4.0  # what cut.flac's header promises; it holds about 60 % of it
SHRINKS_FROM_S = 6.0  # longer than one 5 s render chunk
BLIP_S = 0.3  # shorter than one 400 ms BS.1770 block: no measurable loudness


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def tag_args(title: str, track: int) -> list[str]:
    pairs = {**TAGS, "title": title, "track": f"{track}/9"}
    return [x for k, v in pairs.items() for x in ("-metadata", f"{k}={v}")]


def write_wav(path: Path, seconds: float, seed: int, channels: int = 2, rate: int = RATE) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.2 * np.sin(2 * np.pi * (220 + 20 * seed) * t)[:, None] + 0.01 * rng.standard_normal((t.size, channels))
    sf.write(str(path), tone.astype(np.float32), rate, subtype="PCM_16")


def make_picture(path: Path, color: str) -> bytes:
    ffmpeg("-f", "lavfi", "-i", f"color=c={color}:s=16x16", "-frames:v", "1", str(path))
    return path.read_bytes()


def vorbis_picture(jpeg: bytes) -> str:
    from mutagen.flac import Picture

    picture = Picture()
    picture.type, picture.mime, picture.data = 3, "image/jpeg", jpeg
    return base64.b64encode(picture.write()).decode("ascii")


def id3_frames(title: str, track: int, jpeg: bytes) -> list:
    from mutagen import id3

    return [
        id3.TIT2(encoding=3, text=title), id3.TPE1(encoding=3, text=TAGS["artist"]),
        id3.TALB(encoding=3, text=TAGS["album"]), id3.TPE2(encoding=3, text=TAGS["album_artist"]),
        id3.TRCK(encoding=3, text=f"{track}/9"), id3.TPOS(encoding=3, text="1/1"), id3.TDRC(encoding=3, text="1997"),
        id3.TCON(encoding=3, text=TAGS["genre"]), id3.TXXX(encoding=3, desc="MusicBrainz Album Id", text=MB_ALBUM),
        id3.APIC(encoding=3, mime="image/jpeg", type=3, desc="front", data=jpeg),
    ]  # fmt: skip


def build_formats(folder: Path, src: Path, art: Path, jpeg: bytes) -> None:
    """One file per container, each with title "<name> title", the shared tags and the picture."""
    import mutagen
    from mutagen.apev2 import APEBinaryValue
    from mutagen.wave import WAVE

    folder.mkdir(parents=True)
    pic = ["-i", str(art), "-map", "0:a", "-map", "1:v", "-c:v", "copy", "-disposition:v", "attached_pic"]
    for name, track in FORMATS.items():
        out, title = folder / name, f"{name} title"
        tags = tag_args(title, track)
        if name.endswith(".flac"):
            ffmpeg("-i", str(src), *pic, *tags, "-metadata", f"MUSICBRAINZ_ALBUMID={MB_ALBUM}", str(out))
        elif name.endswith(".mp3"):
            ffmpeg("-i", str(src), *pic, "-c:a", "libmp3lame", "-id3v2_version", "3", *tags,
                   "-metadata", f"MusicBrainz Album Id={MB_ALBUM}", str(out))  # fmt: skip
        elif name.endswith(".m4a"):
            from mutagen.mp4 import MP4FreeForm

            ffmpeg("-i", str(src), *pic, "-c:a", "aac", *tags, str(out))
            meta = mutagen.File(str(out))
            meta["----:com.apple.iTunes:MusicBrainz Album Id"] = [MP4FreeForm(MB_ALBUM.encode())]
            meta.save()
        elif name.endswith((".ogg", ".opus")):
            codec = "libvorbis" if name.endswith(".ogg") else "libopus"
            ffmpeg("-i", str(src), "-c:a", codec, *tags, str(out))
            meta = mutagen.File(str(out))
            meta["METADATA_BLOCK_PICTURE"] = [vorbis_picture(jpeg)]
            meta["MUSICBRAINZ_ALBUMID"] = [MB_ALBUM]
            meta.save()
        elif name.endswith(".wav"):  # an ID3 chunk in a RIFF/WAVE file
            write_wav(out, 1.0, track)
            wave = WAVE(str(out))
            wave.add_tags()
            for frame in id3_frames(title, track, jpeg):
                wave.tags.add(frame)
            wave.save()
        elif name.endswith(".aiff"):
            ffmpeg("-i", str(src), "-write_id3v2", "1", *tags, str(out))
            meta = mutagen.File(str(out))
            meta.tags.add(id3_frames(title, track, jpeg)[-2])  # MusicBrainz id
            meta.tags.add(id3_frames(title, track, jpeg)[-1])  # APIC
            meta.save()
        elif name.endswith(".wv"):
            ffmpeg("-i", str(src), *tags, str(out))
            meta = mutagen.File(str(out))
            meta["Cover Art (Front)"] = APEBinaryValue(b"cover.jpg\x00" + jpeg)
            meta["MUSICBRAINZ_ALBUMID"] = MB_ALBUM
            meta.save()
        elif name.endswith(".wma"):
            from mutagen.asf import ASFByteArrayAttribute, ASFUnicodeAttribute

            ffmpeg("-i", str(src), "-c:a", "wmav2", *tags, str(out))
            meta = mutagen.File(str(out))
            # WM/Picture: type, size (LE), MIME and description (UTF-16LE, NUL-terminated), data
            blob = (bytes([3]) + len(jpeg).to_bytes(4, "little") + "image/jpeg\x00".encode("utf-16-le")
                    + "\x00".encode("utf-16-le") + jpeg)  # fmt: skip
            meta["WM/Picture"] = [ASFByteArrayAttribute(blob)]
            meta["MusicBrainz/Album Id"] = [ASFUnicodeAttribute(MB_ALBUM)]
            meta.save()


def build_messy(folder: Path, root: Path, src: Path) -> None:
    """ID3v1 tags only, a line break and quotes and an emoji in names, a 0.3 s sound, a 0-byte file,
    text named .mp3, a symlink to itself, a symlink to the folder above (a loop) and one to a file
    outside the music folder."""
    folder.mkdir()
    ffmpeg("-i", str(src), "-c:a", "libmp3lame", "-write_id3v2", "0", "-write_id3v1", "1", "-metadata", "title=Old Rip",
           "-metadata", "artist=Tape Deck", "-metadata", "album=Cassette", str(folder / "id3v1.mp3"))  # fmt: skip
    write_wav(folder / NEWLINE, 1.0, 7)
    write_wav(folder / "it's \"quoted\" \U0001f3b5.flac", 1.0, 8)
    t = np.arange(int(BLIP_S * RATE)) / RATE
    sf.write(str(folder / "blip.flac"), np.repeat(0.3 * np.sin(2 * np.pi * 330 * t)[:, None], 2, axis=1), RATE)
    write_wav(folder / "shrinks.flac", 2 * SHRINKS_FROM_S, 11)  # rewritten shorter by the last test
    write_wav(root / "full.flac", CUT_FULL_S, 10)
    full = (root / "full.flac").read_bytes()
    (folder / "cut.flac").write_bytes(full[: int(len(full) * 0.6)])  # an interrupted copy
    (folder / "empty.flac").write_bytes(b"")
    (folder / "lyrics.mp3").write_text("la la la\n" * 100)
    os.symlink("loop", folder / "loop")
    os.symlink("..", folder / "up")
    write_wav(root / "outside.flac", 1.0, 9)
    os.symlink(root / "outside.flac", folder / "outside.flac")


def decodes(path: Path) -> bool:
    try:
        probe(str(path))
    except AudioError:
        return False
    return True


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    root = tmp_path_factory.mktemp("messy")
    music = root / "music"
    src = root / "src.wav"
    write_wav(src, 1.0, 0)
    jpeg = make_picture(root / "art.jpg", "blue")
    build_formats(music / "Formats", src, root / "art.jpg", jpeg)
    formats = music / "Formats"
    flac = (formats / "a.flac").read_bytes()
    (formats / "damaged.flac").write_bytes(flac[:60])  # cut inside its header
    (formats / "notes.txt").write_text("not music\n")
    (formats / "photo.jpg").write_bytes(jpeg)
    (formats / ".hidden.flac").write_bytes(flac)  # hidden: skipped, never opened
    # RIFF INFO only (ffmpeg's WAV muxer writes LIST/INFO), with a folder picture beside it
    info = music / "Info"
    info.mkdir()
    ffmpeg("-i", str(src), "-metadata", "title=Info title", "-metadata", "artist=Info Artist",
           "-metadata", "album=Info Album", "-metadata", "genre=Ambient", "-metadata", "date=2001",
           "-metadata", "track=4", str(info / "info.wav"))  # fmt: skip
    png = make_picture(info / "folder.png", "red")
    # album order: disc, then track, then name (untagged last)
    discs = music / "Discs"
    discs.mkdir()
    for name, disc, track in (("a.flac", 2, 1), ("b.flac", 1, 2), ("c.flac", 1, 1), ("d.flac", None, None)):
        args = ["-metadata", f"title=Disc {disc} track {track}"] if disc else []
        if disc:
            args += ["-metadata", f"disc={disc}", "-metadata", f"track={track}"]
        ffmpeg("-i", str(src), *args, str(discs / name))
    # names that are not UTF-8: a Latin-1 file, and a Latin-1 folder
    (music / "Latin").mkdir()
    write_wav(root / "tmp.wav", 4.0, 5)
    sf.write(str(root / "tmp.flac"), sf.read(str(root / "tmp.wav"))[0], RATE)
    os.rename(root / "tmp.flac", os.path.join(music, "Latin", LATIN1_FILE))
    os.mkdir(os.path.join(music, LATIN1_DIR))
    ffmpeg("-i", str(root / "tmp.wav"), "-metadata", "title=Jóga", "-metadata", "artist=Björk", str(root / "j.flac"))
    os.rename(root / "j.flac", os.path.join(music, LATIN1_DIR, os.fsdecode(b"j\xf3ga.flac")))
    # 1,000 plain files
    bulk = music / "Bulk"
    bulk.mkdir()
    tiny = (0.1 * np.sin(np.arange(4000) / 8.0)).astype(np.float32)
    for i in range(BULK):
        sf.write(str(bulk / f"bulk {i:04d}.flac"), tiny, 8000)
    build_messy(music / "Messy", root, src)

    mpd_port = free_port()
    daemon = start_daemon(root, music, extra=["--mpd-port", str(mpd_port)])
    daemon.music, daemon.mpd_port = music, mpd_port  # type: ignore[attr-defined]
    daemon.jpeg, daemon.png = jpeg, png  # type: ignore[attr-defined]
    daemon.decodes = {name: decodes(formats / name) for name in FORMATS}  # type: ignore[attr-defined]
    yield daemon
    assert daemon.stop() == 0, daemon.log()


@pytest.fixture
def ctl(lib, capsys):
    def run(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
        old = sys.stdin
        if stdin is not None:
            sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
        try:
            code = auralisctl.main(["--socket", lib.socket_path, *args])
        finally:
            sys.stdin = old
        out, err = capsys.readouterr()
        return code, out, err

    return run


def wire(path: str | Path) -> str:
    """The documented wire form (docs/protocol.md, "Paths"), written out here independently."""
    out = []
    for ch in os.fspath(path):
        if "\udc80" <= ch <= "\udcff":
            out.append(f"\\x{ord(ch) - 0xDC00:02X}")
        else:
            out.append("\\\\" if ch == "\\" else ch)
    return "".join(out)


def expected_files(lib) -> dict[str, int]:
    decodable = sum(lib.decodes.values())
    messy = list(MESSY.values())
    audio = decodable + 1 + 4 + 2 + BULK + messy.count("track")  # Formats, Info, Discs, the Latin-1 names, Bulk, Messy
    # undecodable formats, notes.txt, photo.jpg, folder.png, Messy's text file
    unsupported = (len(FORMATS) - decodable) + 3 + messy.count("unsupported")
    return {"tracks": audio, "unsupported": unsupported, "damaged": 1 + messy.count("damaged")}


def wait_for(predicate, what: str, timeout_s: float = 60.0):
    """A poll of the daemon process for a condition no event announces; the deadline is a safety bound."""
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


# ---------------------------------------------------------------- scan and rejected files
def test_every_common_container_decodes(lib) -> None:
    assert lib.decodes == dict.fromkeys(FORMATS, True)


def test_scan_counts_add_up_to_the_files_on_disk_and_scan_wait_prints_them(lib, ctl) -> None:
    want = expected_files(lib)
    first = lib.call("status")["scan"]
    assert first["tracks"] == want["tracks"] and first["error"] is None
    counts = first["counts"]
    assert counts["added"] == want["tracks"], counts  # the first scan brings in every track: none stops it
    assert (counts["unsupported"], counts["damaged"]) == (want["unsupported"], want["damaged"])
    # the rescan: nothing new; every file is in exactly one class, and sidecars written meanwhile are skipped
    code, out, err = ctl("scan", "--wait", "--json")
    assert code == 0, err
    final = json.loads(out.strip().splitlines()[-1])
    counts = final["counts"]
    assert counts["files"] == sum(counts[k] for k in ("added", "updated", "unchanged", "unsupported", "damaged",
                                                       "skipped"))  # fmt: skip
    assert (counts["unchanged"], counts["added"], counts["removed"]) == (want["tracks"], 0, 0)
    # skipped: the hidden file and the .25d sidecars the daemon writes meanwhile (counted apart here,
    # since background fingerprinting keeps adding them)
    others = sum(not f.endswith(".25d") and not f.startswith(".") and os.path.exists(os.path.join(d, f))
                 for d, _, files in os.walk(lib.music) for f in files)  # a dangling link (Messy/loop) is no file
    assert counts["files"] - counts["skipped"] == others == want["tracks"] + want["unsupported"] + want["damaged"]
    assert counts["skipped"] >= 1
    code, out, err = ctl("scan", "--wait")
    assert code == 0, err
    assert f"{want['unsupported']} unsupported, {want['damaged']} damaged" in out and "0 added" in out
    assert "auralisctl rejected lists why" in out


def test_the_last_scan_progress_event_says_the_scan_ended(lib) -> None:
    from tests.auralisd.rpc import Client

    with Client.unix(lib.socket_path) as client:
        client.call("subscribe", events=["scan_progress"])
        assert client.call("library.scan")["started"] is True
        last = client.wait_event("scan_progress", lambda data: data["running"] is False, timeout_s=60)
    assert last["counts"]["damaged"] == expected_files(lib)["damaged"]
    assert last["error"] is None and last["done"] == last["total"]


def test_rejected_lists_every_file_the_library_could_not_use_with_its_reason(lib, ctl) -> None:
    formats = lib.music / "Formats"
    rejected = {f["path"]: f for f in json.loads(ctl("rejected", "--json")[1])["files"]}
    want = {str(formats / "damaged.flac"): "damaged", str(formats / "notes.txt"): "unsupported",
            str(formats / "photo.jpg"): "unsupported", str(lib.music / "Info" / "folder.png"): "unsupported"}  # fmt: skip
    want.update({str(formats / name): "unsupported" for name, ok in lib.decodes.items() if not ok})
    want.update({str(lib.music / "Messy" / name): kind for name, kind in MESSY.items() if kind != "track"})
    assert {path: f["kind"] for path, f in rejected.items()} == want
    assert all(f["reason"] for f in rejected.values())
    code, out, _ = ctl("rejected")
    assert code == 0
    assert any(line.startswith("damaged") and "damaged.flac" in line for line in out.splitlines())
    # named once in the log, however many rescans
    lib.call("library.scan")
    wait_for(lambda: not lib.call("status")["scan"]["running"], "the rescan")
    assert lib.log().count("damaged.flac") == 1, lib.log()


# ---------------------------------------------------------------- tags, order, cover art
def test_tags_from_every_container_and_album_order(lib, ctl) -> None:
    listing = lib.call("library.list", {"path": str(lib.music / "Formats")})
    tracks = listing["tracks"]
    shown = [Path(t["path"]).name for t in tracks]
    assert shown == sorted((n for n, ok in lib.decodes.items() if ok), key=lambda n: FORMATS[n])  # by track number
    for t in tracks:
        name = Path(t["path"]).name
        assert t["title"] == f"{name} title", t
        assert (t["artist"], t["album"], t["album_artist"], t["genre"]) == (
            "Björk", "Homogenic", "Various", "Electronic"), t  # fmt: skip
        assert (t["track_number"], t["disc_number"]) == (FORMATS[name], 1), t
        assert t["date"].startswith("1997"), t
        assert t["mb_album_id"] == MB_ALBUM, t
    info = lib.call("library.list", {"path": str(lib.music / "Info")})["tracks"][0]
    assert (info["title"], info["artist"], info["album"], info["genre"], info["track_number"]) == (
        "Info title", "Info Artist", "Info Album", "Ambient", 4)  # fmt: skip
    # disc, then track, then name; `ls` prints that order and `add` queues it
    code, out, _ = ctl("ls", str(lib.music / "Discs"))
    assert [Path(line).name for line in out.splitlines()] == ["c.flac", "b.flac", "a.flac", "d.flac"]
    lib.call("queue.clear")
    assert ctl("add", str(lib.music / "Discs"))[0] == 0
    queue = json.loads(ctl("queue", "--json")[1])["items"]
    assert [Path(item["path"]).name for item in queue] == ["c.flac", "b.flac", "a.flac", "d.flac"]
    lib.call("queue.clear")


def get(lib, target: str, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", lib.http_port, timeout=30)
    try:
        conn.request("GET", target, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        conn.close()


def test_cover_art_is_served_embedded_or_from_the_folder(lib) -> None:
    tracks = {Path(t["path"]).name: t for t in lib.call("library.list", {"path": str(lib.music / "Formats")})["tracks"]}
    for name, track in tracks.items():
        status, kind, body = get(lib, f"/cover/{track['track_id']}")
        assert (status, kind, body) == (200, "image/jpeg", lib.jpeg), name
    info = lib.call("library.list", {"path": str(lib.music / "Info")})["tracks"][0]
    assert get(lib, f"/cover/{info['track_id']}") == (200, "image/png", lib.png)  # folder.png beside it
    bulk = lib.call("library.search", {"query": "bulk 0007"})["tracks"][0]
    assert get(lib, f"/cover/{bulk['track_id']}") == (204, "", b"")  # a track without a picture
    assert get(lib, "/cover/99999999")[0] == 404 and get(lib, "/cover/x")[0] == 404
    assert get(lib, f"/cover/{info['track_id']}", {"Origin": "http://evil.example"})[0] == 403
    assert get(lib, f"/cover/{info['track_id']}", {"Host": "evil.example"})[0] == 403


# ---------------------------------------------------------------- search
def test_search_folds_case_and_accents(lib, ctl) -> None:
    want = sorted(str(lib.music / "Formats" / n) for n, ok in lib.decodes.items() if ok)
    want.append(wire(os.path.join(lib.music, LATIN1_DIR, os.fsdecode(b"j\xf3ga.flac"))))
    for query in ("BJÖRK", "björk", "bjork"):
        code, out, _ = ctl("search", query)
        assert code == 0 and sorted(out.splitlines()) == sorted(want), query


def test_search_never_cuts_in_silence_and_the_pipe_adds_every_match(lib, ctl, monkeypatch) -> None:
    answer = lib.call("library.search", {"query": "bulk"})
    assert (len(answer["tracks"]), answer["total"], answer["truncated"]) == (100, BULK, True)
    code, out, err = ctl("search", "bulk", "--limit", "10")
    assert len(out.splitlines()) == 10 and f"10 of {BULK}" in err
    monkeypatch.setattr(auralisctl, "SEARCH_PAGE", 300)  # several pages
    code, out, _ = ctl("search", "bulk")
    assert code == 0 and len(set(out.splitlines())) == BULK
    lib.call("queue.clear")
    code, added, err = ctl("add", "-", stdin=out.encode())
    assert code == 0, err
    assert added.strip() == f"added {BULK} tracks at #1-#{BULK}"
    assert lib.call("status")["queue_length"] == BULK
    lib.call("queue.clear")


# ---------------------------------------------------------------- names that are not UTF-8
def test_a_printed_latin1_path_goes_back_to_add_and_plays(lib, ctl) -> None:
    lib.call("queue.clear")
    code, out, _ = ctl("ls")
    folder = wire(os.path.join(lib.music, LATIN1_DIR))
    assert folder + "/" in out.splitlines()
    code, out, _ = ctl("ls", folder)  # the printed folder, given back
    (printed,) = out.splitlines()
    assert printed == folder + "/j\\xF3ga.flac"
    code, out, err = ctl("add", printed)
    assert (code, out.strip()) == (0, "added 1 track at #1"), err
    latin = wire(os.path.join(lib.music, "Latin", LATIN1_FILE))
    assert ctl("ls", str(lib.music / "Latin"))[1].splitlines() == [latin]
    # a tab-completed name (the raw bytes, as the shell passes them) names the same file
    assert ctl("add", os.path.join(lib.music, "Latin", LATIN1_FILE))[0] == 0
    queue = json.loads(ctl("queue", "--json")[1])["items"]
    assert [item["path"] for item in queue] == [printed, latin]
    assert queue[1]["title"] == "caf\\xE9"  # untagged: the file name, shown escaped
    assert ctl("add", queue[1]["path"])[0] == 0  # what queue --json printed is accepted as well
    assert ctl("play", "2")[0] == 0
    status = wait_for(lambda: (s := lib.call("status"))["state"] == "play" and s["elapsed_s"] > 0.2 and s,
                      "the Latin-1 file to play")  # fmt: skip
    assert status["track"]["path"] == latin
    # the file in the Latin-1 folder: untagged album, so its album is its folder (album mode auto)
    assert ctl("play", "1")[0] == 0
    status = wait_for(lambda: (s := lib.call("status"))["state"] == "play" and s["track"]["path"] == printed
                      and s["elapsed_s"] > 0.2 and s, "the file in the Latin-1 folder to play")  # fmt: skip
    code, out, err = ctl("status")
    assert code == 0 and "Jóga" in out, err
    assert ctl("stop")[0] == 0
    lib.call("queue.clear")


def test_add_names_what_is_wrong_with_a_path(lib, ctl) -> None:
    formats = lib.music / "Formats"
    sidecar = formats / "a.flac.25d"
    if not sidecar.exists():
        sidecar.write_text("{}")
    cases = {
        str(formats / "nonexistent.flac"): ("not_found", "no such file"),
        str(sidecar): ("bad_audio", "sidecar"),
        str(formats / "notes.txt"): ("bad_audio", "not audio"),
        str(formats / "damaged.flac"): ("bad_audio", "damaged"),
        "/etc/passwd": ("outside_music_dirs", "outside the music folders"),
        str(lib.music / ".." / "x.flac"): ("outside_music_dirs", "outside the music folders"),
    }
    for path, (code, words) in cases.items():
        exit_code, _, err = ctl("add", path)
        assert exit_code == auralisctl.EXIT_DAEMON_ERROR, (path, err)
        assert words in err and "internal" not in err, (path, err)
        with pytest.raises(RuntimeError, match=code):
            lib.call("queue.add", {"paths": [path]})
    assert lib.call("ping") == "pong"


# ---------------------------------------------------------------- Messy/: what else real folders hold
def test_a_name_with_a_line_break_is_printed_on_one_line_and_goes_back_to_add(lib, ctl) -> None:
    """``ls`` and ``search`` print one path per line (a line break in a name as ``\\x0A``), and
    ``ls | auralisctl add -`` adds every track of the folder, the line-break one included."""
    messy = lib.music / "Messy"
    printed = str(messy / "new\\x0Aline.flac")
    code, out, _ = ctl("ls", str(messy))
    lines = out.splitlines()
    assert code == 0 and printed in lines, lines
    tracks = sorted(str(messy / n).replace("\n", "\\x0A") for n, kind in MESSY.items() if kind == "track")
    assert sorted(lines) == tracks  # one line per track: no name split in two
    assert ctl("search", "new")[1].splitlines() == [printed]
    lib.call("queue.clear")
    code, out, err = ctl("add", "-", stdin=out.encode())
    assert (code, out.strip()) == (0, f"added {len(tracks)} tracks at #1-#{len(tracks)}"), err
    queue = json.loads(ctl("queue", "--json")[1])["items"]
    assert str(messy / NEWLINE) in [item["path"] for item in queue]  # JSON carries the name itself
    assert ctl("queue")[1].count("\n") == len(tracks)  # and the text listing one line per entry
    pos = [item["path"] for item in queue].index(str(messy / NEWLINE))
    assert ctl("play", str(pos + 1))[0] == 0
    wait_for(lambda: (s := lib.call("status"))["state"] == "play" and s["track"]["path"] == str(messy / NEWLINE)
             and s["elapsed_s"] > 0.1, "the file with a line break in its name to play")  # fmt: skip
    assert ctl("stop")[0] == 0
    lib.call("queue.clear")


def test_mpd_clients_get_names_they_can_give_back(lib) -> None:
    """Through python-mpd2: a line break in a name is listed as ``\x0A`` (it was a space, and ``add`` of
    what was listed failed: "No such directory"), a Latin-1 name as ``\xE9``; every listed name adds."""
    mpd = pytest.importorskip("mpd")  # python-mpd2, in the test extras
    client = mpd.MPDClient()
    client.timeout = 30
    client.connect("127.0.0.1", lib.mpd_port)
    try:
        newline, latin = "Messy/new\\x0Aline.flac", "Latin/caf\\xE9.flac"
        listed = [e["file"] for e in client.lsinfo("Messy") if "file" in e]
        assert newline in listed and len(listed) == list(MESSY.values()).count("track"), listed
        for command in (client.listall, client.listallinfo):  # the song lines made in SQL
            assert newline in [e["file"] for e in command("Messy") if "file" in e], command
        assert [e["file"] for e in client.lsinfo("Latin") if "file" in e] == [latin]
        client.clear()
        for uri in [*listed, latin]:
            client.add(uri)
        assert [song["file"] for song in client.playlistinfo()] == [*listed, latin]
        client.clear()
    finally:
        client.close()
        client.disconnect()


def test_listen_finds_the_daemons_http_port_and_a_short_sound_keeps_its_level(lib, ctl, monkeypatch, tmp_path) -> None:
    """``listen`` with neither ``--http`` nor ``$AURALIS_HTTP`` asks the daemon where it listens (this one
    is on a free port, not 8765); and a 0.3 s sound, too short for a BS.1770 loudness, plays at its own
    level (it was taken for a -70 LUFS "quiet" track and pushed into the limiter, about 9 dB louder)."""
    monkeypatch.delenv("AURALIS_HTTP", raising=False)
    assert lib.call("status")["http"] == {"host": "127.0.0.1", "port": lib.http_port}
    out = tmp_path / "blip.wav"
    code, _, err = ctl("listen", "--session", str(lib.music / "Messy" / "blip.flac"), "--burst", "--out", str(out))
    assert code == 0, err
    heard, rate = sf.read(str(out), dtype="float32")
    original, _ = sf.read(str(lib.music / "Messy" / "blip.flac"), dtype="float32")
    assert rate == RATE and heard.shape == original.shape
    core = slice(int(0.05 * RATE), int(0.25 * RATE))
    level_db = 20 * np.log10(np.sqrt(np.mean(heard[core] ** 2)) / np.sqrt(np.mean(original[core] ** 2)))
    assert abs(level_db) < 0.5, level_db


def test_a_flac_cut_short_plays_to_the_cut_and_the_scan_says_so_once(lib, ctl, tmp_path) -> None:
    """An interrupted copy is a track as long as its intact frames, and plays all of them with no error.

    Before, it kept the 4 s its header promises: the chunk holding the cut failed whole (a second or
    more of good audio lost) and the player reported a decode error there.
    """
    cut = lib.music / "Messy" / "cut.flac"
    track = lib.call("library.track", {"path": str(cut)})
    assert 0.5 * CUT_FULL_S < track["duration_s"] < 0.65 * CUT_FULL_S, track
    out = tmp_path / "cut.wav"
    code, _, err = ctl("listen", "--session", str(cut), "--burst", "--variant", "original", "--out", str(out))
    assert code == 0, err
    heard, rate = sf.read(str(out), dtype="float32")
    assert abs(len(heard) - track["duration_s"] * rate) <= 1  # every intact frame
    assert np.sqrt(np.mean(heard[-rate // 10 :] ** 2)) > 0.05  # sound to the very end, not silence
    lines = [line for line in lib.log().splitlines() if "cut short" in line]
    assert len(lines) == 1 and str(cut) in lines[0] and "WARNING" in lines[0], lines


def test_the_log_says_each_decision_once_and_bad_files_without_a_traceback(lib, ctl) -> None:
    """After everything above (scans, the damaged and unsupported files, plays, sessions, a symlink loop):
    no traceback, and each plan once, as the player's line, not 3-5 lines of ``auralis.plan`` per plan."""
    id3v1 = lib.music / "Messy" / "id3v1.mp3"
    lib.call("queue.clear")
    assert ctl("add", str(id3v1))[0] == 0 and ctl("play")[0] == 0
    status = wait_for(lambda: (s := lib.call("status"))["state"] == "play" and s.get("decision") and s, "a decision")
    track = status["track"]
    assert (track["title"], track["artist"], track["album"]) == ("Old Rip", "Tape Deck", "Cassette")  # ID3v1 only
    assert ctl("preset", "warm")[0] == 0 and ctl("preset", "adaptive")[0] == 0
    assert ctl("stop")[0] == 0
    lib.call("queue.clear")
    log = lib.log()
    assert "Traceback" not in log, log
    # one event per line, even for a name holding a line break; bytes that are not UTF-8 as \xHH (as
    # clients print them), not Python's \udcXX
    event = re.compile(r"\d\d:\d\d:\d\d [A-Z]+ [a-z_.]+: ")
    assert [line for line in log.splitlines() if not event.match(line)] == []
    assert f"{lib.music / 'Messy'}/new\\x0Aline.flac: [2D LWRP]" in log
    assert f"{wire(os.path.join(lib.music, 'Latin', LATIN1_FILE))}: [2D LWRP]" in log and "\\udc" not in log
    assert f"{id3v1}: [2D LWRP]" in log, log
    assert " auralis.plan: " not in log, [line for line in log.splitlines() if "auralis.plan" in line][:5]


def test_a_track_that_fails_to_play_shows_in_mpd_status_until_clearerror(lib, tmp_path) -> None:
    """A file rewritten shorter after the scan (no rescan): the player stops it where its audio ends,
    tells MPD clients why in ``status`` (``error:``, which mpc prints as ``ERROR:``; they saw nothing),
    and plays on; ``clearerror`` forgets it. (Last in this module: it changes a file of the library.)"""
    mpd = pytest.importorskip("mpd")
    shrinks = lib.music / "Messy" / "shrinks.flac"
    write_wav(tmp_path / "short.flac", 1.0, 12)
    os.replace(tmp_path / "short.flac", shrinks)
    client = mpd.MPDClient()
    client.timeout = 30
    client.connect("127.0.0.1", lib.mpd_port)
    try:
        client.clear()
        client.add("Messy/shrinks.flac")
        client.add("Messy/blip.flac")
        client.play(0)
        status = wait_for(lambda: (st := client.status()).get("error") and st, "the error in MPD's status")
        assert status["error"].startswith(f"{shrinks}: its audio ends at 1.00 s"), status
        wait_for(lambda: client.status().get("song") == "1" or client.status()["state"] == "stop", "the next track")
        client.clearerror()
        assert "error" not in client.status()
        client.stop()
        client.clear()
    finally:
        client.close()
        client.disconnect()
