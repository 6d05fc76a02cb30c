"""``python -m mobilenets ...`` (also what ``torchrun -m mobilenets`` runs)."""

from mobilenets.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
