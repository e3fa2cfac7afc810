"""Sub-commands of the ``vocalfusion`` CLI; each module has ``register(subparsers)``."""
