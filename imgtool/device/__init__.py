"""Talking to a board: finding its port (:mod:`~imgtool.device.ports`), reading its facts
(:mod:`~imgtool.device.board`), the device commands (:mod:`~imgtool.device.commands`) and the serial
monitor (:mod:`~imgtool.device.monitor`, keys from :mod:`~imgtool.device.keyboard`). Image building
never imports this package."""
