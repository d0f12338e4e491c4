"""Finding the cause inside trio's exception groups (nurseries always raise groups)."""

from __future__ import annotations


def first_leaf(exc: BaseException, kinds: type[BaseException] | tuple[type[BaseException], ...]) -> BaseException | None:
    """The first non-group exception of ``kinds`` in ``exc`` (``exc`` itself, or nested depth first), or None.

    Groups are looked into, never returned: ``ExceptionGroup`` is itself an ``Exception``.
    """
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = first_leaf(inner, kinds)
            if found is not None:
                return found
        return None
    return exc if isinstance(exc, kinds) else None
