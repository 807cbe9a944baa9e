"""Allow ``python -m openspec_cli``."""

from openspec_cli.cli import main

if __name__ == "__main__":
    main()
