"""Secrets encrypted at rest (TOTP secrets) with Fernet (AES-128-CBC and HMAC-SHA256).

Each configured key (ENGAGE_ENCRYPTION_KEY, a comma-separated list) is
stretched with HKDF into a Fernet key of its own. The first key seals; every
key opens, so a key is rotated by putting the new one first and keeping the
old one after it: new set-ups are sealed with the new key, and the old one is
dropped once no set-up sealed with it is left (README: "Rotating the
encryption key").
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from engage_core.errors import Unavailable

log = logging.getLogger("engage.secret_box")
_PURPOSE = b"engage-suite/totp-secrets"
# A retry helps once the operator has listed the key again; until then, every minute.
_RETRY_AFTER = 60


class SecretNotOpened(Unavailable, ValueError):
    """No configured key opens a stored secret: the key that sealed it was dropped
    from ENGAGE_ENCRYPTION_KEY (or never given to this machine). The service
    cannot check that user's second factor until it is listed again: a 503, not
    a bug (``ValueError``, as ``SecretBox.open`` promises)."""

    def __init__(self) -> None:
        super().__init__(
            "the server cannot open this second factor at the moment; try again later",
            retry_after=_RETRY_AFTER,
            reason="no configured encryption key opens this secret",
        )


def _fernet(key: bytes) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PURPOSE).derive(key)
    return Fernet(base64.urlsafe_b64encode(derived))


class FernetSecretBox:
    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is needed")
        self._box = MultiFernet([_fernet(key) for key in keys])

    def seal(self, plaintext: str) -> str:
        return self._box.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def open(self, sealed: str) -> str:
        try:
            return self._box.decrypt(sealed.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            pass
        log.error(
            "secret_box.not_opened: no key in ENGAGE_ENCRYPTION_KEY opens a stored TOTP"
            " secret; list the key that sealed it again (README: Rotating the encryption"
            " key), or turn that user's second factor off with `engage user mfa-reset`"
        )
        raise SecretNotOpened

    def reseal(self, sealed: str) -> str:
        """The same secret sealed with the first key (for a rotation)."""
        try:
            return self._box.rotate(sealed.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            raise ValueError("no configured encryption key opens this secret") from None
