"""imgtool: Rust firmware ELF → everything needed to flash and ship it on Espressif chips."""

__version__ = "0.1.0"
