"""auralisd: the Auralis daemon (trio). Imports ``auralis``; ``auralis`` never imports it.

Layout: ``actors/`` (each owns one piece of state), ``protocol/`` (sans-IO codec, error
codes, command table), ``transport/`` (control socket, HTTP/WebSocket), ``config.py``,
``main.py`` (the root nursery). ``jobs.py`` holds the functions worker processes run.
"""
