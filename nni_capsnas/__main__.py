"""``python -m nni_capsnas``: the command line."""

from nni_capsnas.app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
