"""`python -m dialsum`: the command line (dialsum.cli)."""
from dialsum.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
