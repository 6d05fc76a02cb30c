"""``python -m mobilenets ...`` (also what ``torchrun -m mobilenets`` runs)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
