"""IOS password types: check a password against ``username ... secret 5 $1$...``.

``verify(Secret(kind, value), password)`` for kind 0 (clear text), 5 (MD5
crypt), 7 (Vigenère, reversible), 8 (PBKDF2-SHA256) and 9 (scrypt), as IOS
writes them; :func:`encode` makes a value of a given type (``secret`` is
written as type 9 by cbac, the strongest IOS type).  Comparisons are
constant time.  The appliance's ``check_login``/``check_enable`` use these
(through ``cbac.console.auth``); the parser and renderer use them for
``secret`` values (here, in ``cbac/config``, because configuration never
imports the console: tests/test_layering.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

_CISCO64 = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_STD64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_TO_CISCO = bytes.maketrans(_STD64, _CISCO64)

_XLAT = b"dsfd;kfoA,.iyewrkldJKDHSUBsgvca69834ncxv9873254k;fg87"


#: The shipped configuration's stand-in for a password (cbac/firstpass.py
#: replaces it on the first start); never accepted as a password.
PLACEHOLDER = "INITIAL-PASSWORD-NOT-YET-GENERATED"


def _salt(n: int) -> str:
    return "".join(chr(_CISCO64[b % 64]) for b in os.urandom(n))


# -- type 7 ------------------------------------------------------------------

def type7_decode(value: str) -> str:
    """Reveal a type 7 password (they are obfuscated, not protected)."""
    off = int(value[:2])
    data = bytes.fromhex(value[2:])
    return bytes(b ^ _XLAT[(off + i) % len(_XLAT)] for i, b in enumerate(data)).decode(
        "latin-1")


def type7_encode(password: str, offset: int = None) -> str:
    if offset is None:
        offset = os.urandom(1)[0] % 16
    raw = password.encode("latin-1")
    return "%02d" % offset + "".join(
        "%02X" % (b ^ _XLAT[(offset + i) % len(_XLAT)]) for i, b in enumerate(raw))


# -- type 5 (FreeBSD/Linux MD5 crypt) ------------------------------------------

_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def md5_crypt(password: str, salt: str) -> str:
    pw = password.encode("utf-8")
    salt = salt[:8]
    s = salt.encode("ascii")
    magic = b"$1$"
    ctx = hashlib.md5(pw + magic + s)
    alt = hashlib.md5(pw + s + pw).digest()
    n = len(pw)
    while n > 0:
        ctx.update(alt[:min(n, 16)])
        n -= 16
    i = len(pw)
    while i:
        ctx.update(b"\0" if i & 1 else pw[:1])
        i >>= 1
    final = ctx.digest()
    for r in range(1000):
        c = hashlib.md5()
        c.update(pw if r & 1 else final)
        if r % 3:
            c.update(s)
        if r % 7:
            c.update(pw)
        c.update(final if r & 1 else pw)
        final = c.digest()

    def to64(v, n):
        out = ""
        for _ in range(n):
            out += _ITOA64[v & 0x3F]
            v >>= 6
        return out
    f = final
    out = ""
    for a, b, c in ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)):
        out += to64((f[a] << 16) | (f[b] << 8) | f[c], 4)
    out += to64(f[11], 2)
    return "$1$%s$%s" % (salt, out)


# -- types 8 and 9 -----------------------------------------------------------------

def _cisco_b64(raw: bytes) -> str:
    return base64.b64encode(raw).rstrip(b"=").translate(_TO_CISCO).decode("ascii")


def type8_hash(password: str, salt: str) -> str:
    dk = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt.encode("ascii"), 20000, 32)
    return "$8$%s$%s" % (salt, _cisco_b64(dk))


def type9_hash(password: str, salt: str) -> str:
    dk = hashlib.scrypt(password.encode("utf-8"), salt=salt.encode("ascii"), n=16384, r=1, p=1,
                        maxmem=64 * 1024 * 1024, dklen=32)
    return "$9$%s$%s" % (salt, _cisco_b64(dk))


# -- API ---------------------------------------------------------------------------

_HASHED: dict = {}


def hash_secret(password: str) -> str:
    """The type 9 (scrypt) value cbac stores for a ``secret`` entered in
    clear text, as IOS 15.3+ does.  The same clear text gets the same value
    for the life of the process, so that re-reading an unchanged file gives
    an unchanged configuration."""
    v = _HASHED.get(password)
    if v is None:
        if len(_HASHED) > 256:
            _HASHED.clear()
        v = _HASHED[password] = encode(9, password)
    return v


#: passwords a scan tries first (the shipped example configuration's is "cisco")
WELL_KNOWN = ("cisco", "admin", "password", "cbac")


def well_known(secret) -> "str | None":
    """The well-known password ``secret`` accepts, if any."""
    for word in WELL_KNOWN:
        if verify(secret, word):
            return word
    return None


def stable_type7(password: str) -> str:
    """Type 7 form of a clear password for ``service password-encryption``
    (the offset derived from the password, so the rendering is stable)."""
    return type7_encode(password, hashlib.sha256(password.encode("utf-8")).digest()[0] % 16)


def encode(kind: int, password: str) -> str:
    """The configuration value of ``password`` as type ``kind``."""
    if kind == 0:
        return password
    if kind == 5:
        return md5_crypt(password, _salt(4))
    if kind == 7:
        return type7_encode(password)
    if kind == 8:
        return type8_hash(password, _salt(14))
    if kind == 9:
        return type9_hash(password, _salt(14))
    raise ValueError("unsupported password type %r" % kind)


def verify(secret, password: str) -> bool:
    """True if ``password`` matches ``secret`` (a model ``Secret``).
    Unknown types and malformed values never match."""
    if secret is None:
        return False
    kind, value = int(secret.kind), secret.value
    if PLACEHOLDER in (value, password):
        return False                 # the shipped placeholder is never a password
    try:
        if kind == 0:
            expect = value
        elif kind == 7:
            expect = type7_decode(value)
        elif kind == 5:
            salt = value.split("$")[2]
            expect = md5_crypt(password, salt)
        elif kind == 8:
            expect = type8_hash(password, value.split("$")[2])
        elif kind == 9:
            expect = type9_hash(password, value.split("$")[2])
        else:
            return False
    except (ValueError, IndexError, UnicodeError):
        return False
    return hmac.compare_digest(expect.encode("utf-8", "replace"),
                               (password if kind in (0, 7) else value).encode("utf-8", "replace"))


def enable_permitted(model, password: str) -> bool:
    """``enable``: does ``password`` match the enable secret (or, without
    one, the enable password)?  Neither configured: no."""
    secret = model.enable_secret or model.enable_password
    return secret is not None and verify(secret, password)


def login_privilege(model, user: str, password: str):
    """A password login: the user's privilege, or None (no such user, no
    password, or the wrong one)."""
    u = model.users.get(user)
    if u is None:
        return None
    secret = u.secret or u.password
    if secret is None or not verify(secret, password):
        return None
    return u.privilege
