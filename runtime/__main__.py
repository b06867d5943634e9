"""`python -m runtime` is the `actors` command."""

from runtime._cli import entry

if __name__ == "__main__":
    entry()
