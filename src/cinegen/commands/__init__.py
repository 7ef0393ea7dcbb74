"""Typer sub-apps of the `cinegen` command line, one module each, registered in cli.py with one line."""
