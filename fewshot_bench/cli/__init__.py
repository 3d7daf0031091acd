"""The ``bench`` command: ``main`` assembles the parser from one module per subcommand
(``cli/<name>.py``, each with ``add_parser`` and ``command``)."""
