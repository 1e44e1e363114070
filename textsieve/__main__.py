"""``python -m textsieve`` entry point."""

from textsieve.cli import app

if __name__ == "__main__":
    app()
