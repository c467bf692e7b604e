"""The first start's generated passwords.

The configuration the Debian package ships (/etc/cbac/router.conf, made
from etc/router.conf by :func:`packaged_config`) has no password a scan
would guess: its ``username ... secret`` and ``enable secret`` lines carry
the placeholder :data:`PLACEHOLDER`.  On the first start (``twistd cbac``
as root, before anything else is built) :func:`generate` replaces each
placeholder with a random password stored as a type 9 (scrypt) hash,
writes the clear passwords once to ``STATE_DIR/initial-password`` (mode
0600, root-only: the state directory is 0700) and logs where they are.
The configuration file is rewritten (0600) with the hashes only.

A placeholder never works as a password (:func:`cbac.console.auth.verify`
refuses it), and a start that cannot write both files does not start.
"""

from __future__ import annotations

import os
import re
import secrets
import time

from cbac.config.passwords import PLACEHOLDER  # defined with the password types

#: file name in the state directory
FILENAME = "initial-password"
#: no look-alike characters (0/O, 1/l/I)
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"

_LINE = re.compile(r"^(?P<head>[ \t]*(?:enable[ \t]+secret|username[ \t]+(?P<user>\S+)[ \t].*?secret))"
                   r"[ \t]+0[ \t]+" + PLACEHOLDER + r"[ \t]*(?P<eol>\r?)$", re.M)


class FirstPasswordError(Exception):
    pass


def has_placeholder(data) -> bool:
    if isinstance(data, bytes):
        return PLACEHOLDER.encode() in data
    return PLACEHOLDER in data


def new_password() -> str:
    """About 99 bits: four groups of five characters."""
    return "-".join("".join(secrets.choice(ALPHABET) for _ in range(5)) for _ in range(4))


def replace_placeholders(text: str):
    """-> (new text, [(what, clear password)]).  One password per line."""
    from cbac.config.passwords import encode
    found = []

    def sub(m):
        pw = new_password()
        what = "username %s" % m.group("user") if m.group("user") else "enable secret"
        found.append((what, pw))
        return "%s 9 %s%s" % (m.group("head"), encode(9, pw), m.group("eol"))
    return _LINE.sub(sub, text), found


def _write_0600(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    os.replace(tmp, path)


def generate(config_path: str, data: bytes, state_dir: str) -> tuple:
    """Replace the placeholders of ``data`` (the file ``config_path``):
    -> (new file bytes, path of the password file, [what]).  Writes the
    password file first, then the configuration; raises
    FirstPasswordError with nothing of the configuration changed when
    either cannot be written."""
    text = data.decode("utf-8-sig")
    new, found = replace_placeholders(text)
    if not found:
        raise FirstPasswordError("%s: %s is not on an 'enable secret 0' or "
                                 "'username ... secret 0' line" % (config_path, PLACEHOLDER))
    if has_placeholder(new):
        raise FirstPasswordError("%s: %s is used where cbac cannot generate a password "
                                 "(only 'enable secret 0 %s' and 'username NAME ... secret 0 %s')"
                                 % (config_path, PLACEHOLDER, PLACEHOLDER, PLACEHOLDER))
    out = os.path.join(state_dir, FILENAME)
    lines = ["# cbac: passwords generated on the first start, %s" %
             time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
             "# %s keeps only their type 9 (scrypt) hashes." % config_path,
             "# Log in over SSH with the user's password, then 'enable' with the enable secret.",
             "# Set your own (edit the configuration, then 'reload config') and delete this file."]
    lines += ["%s: %s" % (what, pw) for what, pw in found]
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        _write_0600(out, ("\n".join(lines) + "\n").encode())
        encoded = new.encode("utf-8")
        _write_0600(config_path, encoded)
    except OSError as e:
        raise FirstPasswordError("cannot store the generated passwords: %s: %s"
                                 % (getattr(e, "filename", None) or out, e.strerror or e))
    return encoded, out, [what for what, _ in found]


def packaged_config(text: str) -> str:
    """etc/router.conf as the Debian package ships it: the lab's ``cisco``
    secrets become the placeholder, the lab's comment says so, and the
    seed's ``enable password`` (type 7 of ``cisco123``, unused beside the
    enable secret) is left out."""
    text = re.sub(r"^(username admin privilege 15 secret) 0 cisco$", r"\1 0 " + PLACEHOLDER,
                  text, flags=re.M)
    text = re.sub(r"^(enable secret) 0 cisco$", r"\1 0 " + PLACEHOLDER, text, flags=re.M)
    text = re.sub(r"^enable password 7 02050D4808095E731F\n", "", text, flags=re.M)
    text = re.sub(r"^!--- LAB ONLY:.*\n(?:!---.*\n)*?(?=username )",
                  "!--- The first start replaces the two placeholder secrets below with\n"
                  "!--- random passwords, stores them here as type 9 (scrypt) hashes and\n"
                  "!--- writes them once to /var/lib/cbac/%s (root only; see the log).\n"
                  % FILENAME,
                  text, flags=re.M)
    return text


def main(argv=None):
    """``python3 -m cbac.firstpass SRC DST``: write the packaged configuration."""
    import sys
    argv = sys.argv[1:] if argv is None else argv
    src, dst = argv
    with open(src) as f:
        text = packaged_config(f.read())
    if "secret 0 cisco" in text or "02050D4808095E731F" in text:
        raise SystemExit("%s: a lab password is left in the packaged configuration" % src)
    with open(dst, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
