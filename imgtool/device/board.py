"""What a connected board says about itself (``imgtool board-info``): one read over an open connection."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from imgtool.chips.table import revision_name
from imgtool.device.flasher import size_text

#: JEDEC id layout as the SPI flash returns it: manufacturer, memory type, capacity (log2 of bytes).
_MANUFACTURER_MASK = 0xFF
_MEMORY_TYPE_SHIFT = 8
_CAPACITY_SHIFT = 16
_BYTE = 0xFF


@dataclass
class BoardInfo:
    chip: str
    description: str
    revision: str | None
    crystal_mhz: int | None
    features: list[str]
    mac: str | None
    flash_manufacturer: int | None
    flash_device: int | None
    flash_size: int | None  # bytes
    psram: list[str] = field(default_factory=list)
    secure_boot: bool | None = None
    flash_encryption: bool | None = None
    security_flags: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        doc = asdict(self)
        for key in ("flash_manufacturer", "flash_device"):
            doc[f"{key}_hex"] = f"0x{doc[key]:02x}" if doc[key] is not None else None
        return doc

    def lines(self, port: str | None = None) -> list[str]:
        """``Name: value`` rows, aligned (the port first when given)."""
        def yes_no(value):
            return "unknown" if value is None else ("enabled" if value else "disabled")

        flash = "unknown"
        if self.flash_manufacturer is not None:
            flash = f"manufacturer 0x{self.flash_manufacturer:02x}, device 0x{self.flash_device:04x}"
        rows = [("Port", port)] if port else []
        rows += [
            ("Chip", f"{self.description} (revision {self.revision})" if self.revision and "revision" not in self.description else self.description),
            ("Crystal", f"{self.crystal_mhz} MHz" if self.crystal_mhz else "unknown"),
            ("Flash", f"{size_text(self.flash_size) if self.flash_size else 'size unknown'} ({flash})"),
            ("MAC", self.mac or "unknown"),
            ("Features", ", ".join(self.features) or "none reported"),
            ("PSRAM", ", ".join(self.psram) or "none reported"),
            ("Secure Boot", yes_no(self.secure_boot)),
            ("Flash encryption", yes_no(self.flash_encryption)),
        ]
        width = max(len(name) for name, _ in rows)
        return [f"{name + ':':<{width + 1}} {value}" for name, value in rows]


def read_board(connection) -> BoardInfo:
    """The facts of the chip behind ``connection`` (:class:`imgtool.device.flasher.Connection`); what a chip
    or esptool cannot say is left None."""
    device = connection.device
    esp = connection.esp
    features = _try(esp.get_chip_features) or []
    mac = _try(esp.read_mac)
    esp = connection.ready()
    flash_id = _try(esp.flash_id)
    manufacturer = device_id = None
    if flash_id is not None:
        manufacturer = flash_id & _MANUFACTURER_MASK
        device_id = ((flash_id >> _MEMORY_TYPE_SHIFT) & _BYTE) << 8 | (flash_id >> _CAPACITY_SHIFT) & _BYTE
    security = _try(esp.get_security_info) or {}
    return BoardInfo(
        chip=device.chip,
        description=device.description or device.chip,
        revision=revision_name(device.revision) if device.revision >= 0 else None,
        crystal_mhz=device.crystal_mhz,
        features=[f for f in features if "PSRAM" not in f],
        mac=":".join(f"{b:02x}" for b in mac) if mac else None,
        flash_manufacturer=manufacturer,
        flash_device=device_id,
        flash_size=connection.flash_size(),
        psram=[f for f in features if "PSRAM" in f],
        secure_boot=_flag(_try(esp.get_secure_boot_enabled)),
        flash_encryption=_flag(_try(esp.get_flash_encryption_enabled)),
        security_flags={k: bool(v) for k, v in (security.get("parsed_flags") or {}).items()},
    )


def _flag(value) -> bool | None:
    return None if value is None else bool(value)


def _try(read):
    """``read()``, or None where the chip or esptool does not support it."""
    try:
        value = read()
    except Exception:  # esptool raises NotSupportedError, FatalError or AttributeError per chip
        return None
    return value


__all__ = ["BoardInfo", "read_board"]
