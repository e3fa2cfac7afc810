"""The ``vocalfusion`` command line: :func:`fusion.cli.main.main` and one module per sub-command in
:mod:`fusion.cli.commands`."""
