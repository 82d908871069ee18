"""One module per subcommand of `vcam`; vcam/cli.py imports only the one that runs."""
