"""Subcommands of the `auralis` command line, one module each."""
