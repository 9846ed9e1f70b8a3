"""Sub-commands of ``nni-capsnas``; each module exposes ``register(subparsers)``."""
