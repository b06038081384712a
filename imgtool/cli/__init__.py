"""The `imgtool` command: a thin click shell over the library, one module per command group, loaded lazily by :mod:`imgtool.cli.main`."""
