"""Transports: the control socket, the HTTP/WebSocket port and its per-listener sessions."""
