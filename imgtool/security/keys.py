"""Secure Boot V2 keys: reading PEM keys, and whether a chip's Secure Boot can check them."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from imgtool.atomic import read_input
from imgtool.chips.security import ECDSA192, ECDSA256, ECDSA384, RSA3072, RSA_BYTES, Scheme, SecureBoot
from imgtool.chips.table import CHIPS, revision_name
from imgtool.errors import InputError, UsageError
from imgtool.security.signature_block import MAX_SIGNATURE_BLOCKS, key_fields


@dataclass(frozen=True)
class SigningKey:
    """A key read from ``path``: a private key signs, a public key only checks."""

    path: str
    public: object  # cryptography RSAPublicKey / EllipticCurvePublicKey
    private: object | None
    scheme: Scheme

    def key_fields(self) -> bytes:
        """The key part of a signature block; its SHA-256 is the digest burned in eFuse."""
        return key_fields(self.scheme, self.public)

    @property
    def key_digest(self) -> bytes:
        return hashlib.sha256(self.key_fields()).digest()


def load_key(path: str | os.PathLike, *, private: bool = True, field: str = "--sign-key") -> SigningKey:
    """Read a PEM key; ``private`` requires a private key (to sign), otherwise either kind is fine."""
    # not at the top: verify and info load this module through signing, only reading a key needs cryptography (~9 ms)
    from cryptography.hazmat.primitives import serialization

    data = read_input(path, "key file", limit=1 << 20)
    priv = pub = None
    try:
        priv = serialization.load_pem_private_key(data, password=None)
        pub = priv.public_key()
    except TypeError:
        raise InputError("the private key is password protected; give an unencrypted PEM key", path=path, field=field) from None
    except ValueError:
        if private:
            raise InputError(
                "is not a PEM private key; create one with 'espsecure generate-signing-key --version 2 --scheme rsa3072 KEY.pem'",
                path=path,
                field=field,
            ) from None
        try:
            pub = serialization.load_pem_public_key(data)
        except ValueError:
            raise InputError("is not a PEM public or private key", path=path, field=field) from None
    return SigningKey(os.fspath(path), pub, priv, _scheme_of(pub, path, field))


def _scheme_of(public, path, field: str) -> Scheme:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa  # not at the top: as in load_key (~9 ms)

    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size != RSA_BYTES * 8:
            raise InputError(
                f"is an RSA-{public.key_size} key; Secure Boot V2 takes RSA-3072 only", path=path, field=field
            )
        return RSA3072
    if isinstance(public, ec.EllipticCurvePublicKey):
        by_name = {"secp192r1": ECDSA192, "secp256r1": ECDSA256, "secp384r1": ECDSA384}
        scheme = by_name.get(public.curve.name)
        if scheme is None:
            raise InputError(
                f"is an ECDSA key on {public.curve.name}; Secure Boot V2 takes P-192, P-256 or P-384",
                path=path,
                field=field,
            )
        return scheme
    raise InputError("is neither an RSA nor an ECDSA key", path=path, field=field)


def load_trusted_keys(paths) -> list[SigningKey]:
    """Keys given to `info`/`verify` to say which signatures are trusted: public or private PEM."""
    return [load_key(p, private=False, field="--key") for p in paths]


def _secure_boot(chip: str) -> SecureBoot | None:
    """The chip row's Secure Boot V2, None for a chip without it (or a name the table does not know)."""
    return CHIPS[chip].secure_boot if chip in CHIPS else None


def check_chip_schemes(chip: str, keys: list[SigningKey], *, field: str = "--sign-key", existing: int = 0) -> list[str]:
    """Refuse keys the chip cannot verify or more blocks than it has key slots; returns warnings."""
    caps = _secure_boot(chip)
    if caps is None:
        raise UsageError(f"{chip} has no Secure Boot V2", field=field)
    allowed = ", ".join(s.name for s in caps.schemes)
    for key in keys:
        if key.scheme not in caps.schemes:
            raise InputError(
                f"is an {key.scheme.name} key but {chip}'s Secure Boot V2 verifies {allowed} only; use a key of one of those",
                path=key.path,
                field=field,
            )
    schemes = {k.scheme.name for k in keys}
    if len(schemes) > 1:
        raise UsageError(
            f"the keys mix {' and '.join(sorted(schemes))}; a Secure Boot bootloader checks one scheme, so use keys of one kind",
            field=field,
        )
    total = existing + len(keys)
    if total > min(caps.key_slots, MAX_SIGNATURE_BLOCKS):
        limit = min(caps.key_slots, MAX_SIGNATURE_BLOCKS)
        raise UsageError(
            f"{total} signature blocks asked for but {chip} takes at most {limit}"
            + (f" (the image already has {existing})" if existing else "")
            + "; pass fewer keys",
            field=field,
        )
    warnings = []
    if any(k.scheme is ECDSA192 for k in keys):
        warnings.append(
            "ECDSA-P192 is a legacy Secure Boot scheme (about 96-bit security); prefer P-256"
            + (f"; P-192 is off by default on {chip} and cannot be enabled once Secure Boot is on" if caps.p192_off_by_default else "")
        )
    return warnings


def revision_warning(chip: str, min_rev_full: int) -> str | None:
    """Secure Boot V2 is missing on early revisions of some chips: say so when the app allows them."""
    caps = _secure_boot(chip)
    if caps is not None and min_rev_full < caps.min_rev:
        return (
            f"Secure Boot V2 on {chip} needs chip revision {revision_name(caps.min_rev)} or later; "
            "the app also runs on earlier revisions, where the signature is not checked"
        )
    return None
