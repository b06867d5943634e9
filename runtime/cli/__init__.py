"""The `actors` command line (`python -m runtime` is the same program).

`_main` parses the arguments and runs `actors run` and `actors status`;
`_spec` reads a launch spec (a TOML file or `module:callable`); `_status`
finds a running runtime's control file, checks it can be trusted and asks
for the process table. Change here for what the command accepts or prints.

Nothing here is public: the console script `actors` is `_main.entry`.
"""

__all__: list[str] = []
