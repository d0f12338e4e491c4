"""Integration points between the daemon and a service manager (systemd), in a module of their own.

``main`` builds the daemon around a :class:`Hooks`; ``systemd`` fills one in. Both import this
module, so neither imports the other (no import cycle, hidden or not).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio


@dataclass
class Hooks:
    """Integration points for the service manager (``systemd.py``): all optional.

    ``control_listeners`` replaces the control socket the daemon would open itself (socket
    activation); ``on_ready`` runs once everything serves; ``on_status`` receives a short
    status line now and then; ``on_stopping`` and ``on_reloading`` run at the start of a
    shutdown and of a SIGHUP reload.
    """

    control_listeners: list[trio.SocketListener] | None = None
    on_ready: Callable[[], object] | None = None
    on_status: Callable[[dict[str, Any]], None] | None = None
    on_stopping: Callable[[], object] | None = None
    on_reloading: Callable[[], object] | None = None
    extra_tasks: list[Callable[..., Awaitable[None]]] = field(default_factory=list)
