"""IOS password types for the console's logins (``check_login``,
``check_enable``): the functions live in :mod:`cbac.config.passwords`
(configuration needs them too and never imports the console)."""

from cbac.config.passwords import (  # noqa: F401
    WELL_KNOWN, encode, hash_secret, md5_crypt, stable_type7, type7_decode, type7_encode,
    type8_hash, type9_hash, verify, well_known)
