"""``python -m personlens.cli``: the ``personlens`` command line."""
from . import main

if __name__ == "__main__":
    main(prog_name="personlens")
