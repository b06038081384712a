"""Pinned bootloader manifest shipped with imgtool (installed as ``imgtool.bootloader_manifest``)."""
