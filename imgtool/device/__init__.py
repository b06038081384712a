"""Stage 11, the board: takes a pack folder (or an ELF to pack) and a serial port, gives a flashed,
reset and monitored device. What ``flash`` writes is decided first, from values only
(:mod:`~imgtool.device.preflight`), then written through esptool (:mod:`~imgtool.device.flasher`); the port
is found by :mod:`~imgtool.device.ports`, the board read by :mod:`~imgtool.device.board`, the other
device commands are :mod:`~imgtool.device.commands`, and the serial monitor :mod:`~imgtool.device.monitor`
(keys from :mod:`~imgtool.device.keyboard`). Image building never imports this package."""
