"""Subcommands of the `auralis` command line, one module each."""


def display_path(path: str) -> str:
    """``path`` printable on any terminal: bytes that are not UTF-8 shown as ``\\xNN``.

    Python gives a non-UTF-8 file name as ``str`` with surrogate escapes, which a UTF-8
    stdout refuses to encode; ``--json`` output escapes them as ``\\udcNN`` instead.
    """
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
