"""The application layer: services, the command table and dispatch, replies and presentation.

Transports (control socket, HTTP/WebSocket, later MPD and outputs) call into this layer; it
calls the actors' facades. Dependencies run one way:
``transport -> app -> actors -> playback -> auralis``, with ``protocol/`` a leaf.
"""
