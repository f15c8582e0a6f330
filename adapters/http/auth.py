"""API keys and tenants: `Authorization: Bearer KEY` names the tenant a request acts for.

Keys are configured as `tenant:key` pairs (environment `LOOPWRIGHT_API_KEYS`, comma
separated) or in a file, one `tenant key` or `tenant sha256:HEX` per line (`#` comments).
Only SHA-256 digests are kept in memory, so a file can hold digests instead of keys. With no
key configured every request acts for the default tenant `""`; `loopwright serve` then refuses
a non-loopback address unless told `--insecure`.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from pathlib import Path

from attrs import frozen

from loopwright.engine.errors import LoopwrightError

__all__ = [
    "AuthError",
    "KeyConfigError",
    "Keyring",
    "is_loopback",
]

_PREFIX = "sha256:"


class KeyConfigError(LoopwrightError, ValueError):
    """The API key configuration cannot be read."""


class AuthError(LoopwrightError, PermissionError):
    """The request carries no key, or one that is not configured (HTTP 401)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = "invalid_api_key"


def digest(key: str) -> str:
    """The SHA-256 hex digest a key is kept as."""
    return hashlib.sha256(key.encode()).hexdigest()


@frozen
class Keyring:
    """Key digests to tenants; empty means open (every request is the default tenant)."""

    tenants: Mapping[str, str]
    """SHA-256 hex digest of a key -> tenant."""

    @property
    def open(self) -> bool:
        """No key configured: requests are not authenticated."""
        return not self.tenants

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> Keyring:
        """From (tenant, key) pairs; a key given as `sha256:HEX` is taken as its digest."""
        tenants: dict[str, str] = {}
        for tenant, key in pairs:
            if not tenant or not key:
                raise KeyConfigError(f"empty tenant or key in {tenant!r}:{'*' * len(key)}")
            if key.startswith(_PREFIX):
                hexdigest = key[len(_PREFIX) :].lower()
                if len(hexdigest) != 64 or any(c not in "0123456789abcdef" for c in hexdigest):
                    raise KeyConfigError(
                        f"tenant {tenant!r}: {key[:16]}… is not `sha256:` and 64 hex digits"
                    )
            else:
                hexdigest = digest(key)
            if tenants.get(hexdigest, tenant) != tenant:
                raise KeyConfigError(f"one key is given to two tenants ({tenant!r})")
            tenants[hexdigest] = tenant
        return cls(tenants)

    @classmethod
    def from_env_value(cls, value: str) -> Keyring:
        """From `LOOPWRIGHT_API_KEYS`: `tenant:key,tenant:key` (spaces ignored)."""
        pairs = []
        for item in filter(None, (part.strip() for part in value.split(","))):
            tenant, sep, key = item.partition(":")
            if not sep:
                raise KeyConfigError(
                    "LOOPWRIGHT_API_KEYS entries are `tenant:key`, comma separated; one entry "
                    "has no `:`"
                )
            pairs.append((tenant.strip(), key.strip()))
        return cls.from_pairs(pairs)

    @classmethod
    def from_file(cls, path: Path) -> Keyring:
        """From a file of `tenant key` (or `tenant sha256:HEX`) lines."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise KeyConfigError(f"cannot read the key file {path}: {err}") from None
        pairs = []
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            fields = line.split()
            if len(fields) != 2:
                raise KeyConfigError(
                    f"{path}:{number}: expected `tenant key`, got {len(fields)} fields"
                )
            pairs.append((fields[0], fields[1]))
        return cls.from_pairs(pairs)

    def tenant(self, authorization: str | None) -> str:
        """The tenant of an `Authorization` header value. Raises: AuthError."""
        if self.open:
            return ""
        if not authorization:
            raise AuthError("missing API key: send `Authorization: Bearer <key>`")
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise AuthError("the Authorization header must be `Bearer <key>`")
        # A lookup by digest leaks nothing useful through timing: the caller cannot steer
        # the digest of a guess towards a stored one.
        tenant = self.tenants.get(digest(key.strip()))
        if tenant is None:
            raise AuthError("invalid API key")
        return tenant


def is_loopback(host: str) -> bool:
    """Whether a listen address only accepts local connections."""
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
