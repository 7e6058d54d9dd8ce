"""``python -m personlens``: the ``personlens`` command line."""
from .cli import main

if __name__ == "__main__":
    main(prog_name="personlens")
