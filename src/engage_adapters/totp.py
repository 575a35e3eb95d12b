"""TOTP (RFC 6238) codes with pyotp, and their QR codes as SVG with segno."""

from __future__ import annotations

import io

import pyotp
import segno


class PyotpOneTimePasswords:
    """6-digit codes over 30-second steps of a 160-bit base32 secret (SHA-1, as
    every authenticator app expects)."""

    def new_secret(self) -> str:
        return pyotp.random_base32()

    def code(self, secret: str, step: int) -> str:
        return pyotp.TOTP(secret).generate_otp(step)

    def provisioning_uri(self, secret: str, *, account: str, issuer: str) -> str:
        return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)

    def qr_svg(self, text: str) -> str:
        buffer = io.BytesIO()
        segno.make(text, error="m").save(
            buffer, kind="svg", scale=4, xmldecl=False, svgns=True, title="TOTP set-up"
        )
        return buffer.getvalue().decode("utf-8")
