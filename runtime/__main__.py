"""`python -m runtime` is the `actors` command."""

from runtime.cli._main import entry

if __name__ == "__main__":
    entry()
