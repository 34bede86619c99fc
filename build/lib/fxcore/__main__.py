"""Entry point for ``python -m fxcore``."""

from fxcore.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
