"""Click sub-commands, one module per command group, loaded lazily by ``imgtool.cli``."""
