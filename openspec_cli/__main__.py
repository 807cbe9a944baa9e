"""Allow ``python -m openspec_cli``."""

from openspec_cli.launch import main

if __name__ == "__main__":
    main()
