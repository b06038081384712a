"""Partition-table presets shipped with imgtool (installed as ``imgtool.partition_presets``)."""
