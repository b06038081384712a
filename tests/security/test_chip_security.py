"""Signing and encryption take what a chip can check or decrypt from its chip-table row."""

from __future__ import annotations

import pytest

from imgtool.chips.security import ECDSA192, ECDSA256, RSA3072
from imgtool.chips.table import CHIPS
from imgtool.errors import InputError, UsageError
from imgtool.security.keys import SigningKey, check_chip_schemes, revision_warning


def _key(scheme) -> SigningKey:
    return SigningKey("k.pem", None, None, scheme)


def test_revision_warning_names_the_first_revision_with_secure_boot():
    assert revision_warning("esp32", 0) == (
        "Secure Boot V2 on esp32 needs chip revision v3.0 or later; "
        "the app also runs on earlier revisions, where the signature is not checked"
    )
    assert revision_warning("esp32c3", 2).startswith("Secure Boot V2 on esp32c3 needs chip revision v0.3 or later;")
    assert revision_warning("esp32", 300) is None
    assert all(revision_warning(name, 0) is None for name, c in CHIPS.items() if not (c.secure_boot and c.secure_boot.min_rev))


@pytest.mark.parametrize("chip", [n for n, c in CHIPS.items() if c.secure_boot and ECDSA192 in c.secure_boot.schemes])
def test_p192_warning_adds_the_off_by_default_note_where_the_chip_row_says_so(chip):
    (warning,) = check_chip_schemes(chip, [_key(ECDSA192)])
    assert warning.startswith("ECDSA-P192 is a legacy Secure Boot scheme (about 96-bit security); prefer P-256")
    note = f"; P-192 is off by default on {chip} and cannot be enabled once Secure Boot is on"
    assert warning.endswith(note) == CHIPS[chip].secure_boot.p192_off_by_default


def test_schemes_and_slots_come_from_the_row():
    assert check_chip_schemes("esp32c6", [_key(ECDSA256)]) == []
    with pytest.raises(InputError, match="esp32c61's Secure Boot V2 verifies ECDSA-P192, ECDSA-P256 only"):
        check_chip_schemes("esp32c61", [_key(RSA3072)])
    with pytest.raises(UsageError, match="esp32c2 takes at most 1"):
        check_chip_schemes("esp32c2", [_key(ECDSA256)] * 2)
    with pytest.raises(UsageError, match="esp32h4 has no Secure Boot V2"):
        check_chip_schemes("esp32h4", [_key(RSA3072)])
