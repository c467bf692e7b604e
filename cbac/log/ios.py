"""IOS-format messages through twisted.logger.

Every alert, audit-trail record and ACL log line is emitted here as a
twisted.logger event carrying these keys, which the observers of
:mod:`cbac.log` (buffer for ``show logging``, syslog, terminal monitor) use:

``ios_facility``  "FW", "SEC", "SYS", ...
``ios_severity``  0..7 (IOS / syslog severity)
``ios_mnemonic``  "SMTP_INVALID_COMMAND"
``ios_message``   the whole text without timestamp:
                  ``%FW-3-SMTP_INVALID_COMMAND: Invalid SMTP command from initiator (1.2.3.4:5)``

Debug lines (``debug ip inspect smtp``) carry ``ios_debug`` (the category,
e.g. "smtp") and ``ios_message`` (``CBAC SMTP: VERB - ...``) at severity 7.
Producing them costs nothing unless the category is enabled in
:data:`debugging`.
"""

from __future__ import annotations

from twisted.logger import Logger, LogLevel

log = Logger(namespace="cbac")

_LEVELS = {0: LogLevel.critical, 1: LogLevel.critical, 2: LogLevel.critical,
           3: LogLevel.error, 4: LogLevel.warn, 5: LogLevel.info,
           6: LogLevel.info, 7: LogLevel.debug}


def format_message(facility: str, severity: int, mnemonic: str, text: str) -> str:
    return "%%%s-%d-%s: %s" % (facility, severity, mnemonic, text)


def message(facility: str, severity: int, mnemonic: str, text: str, **kw) -> str:
    """Emit one IOS message; returns its text (handy for tests)."""
    msg = format_message(facility, severity, mnemonic, text)
    log.emit(_LEVELS[severity], "{ios_message}", ios_facility=facility,
             ios_severity=severity, ios_mnemonic=mnemonic, ios_message=msg, **kw)
    return msg


class Debugging:
    """The set of enabled ``debug`` categories (``debug ip inspect smtp`` ->
    "smtp"; ``debug ip inspect detailed`` -> "detailed").  Shared by the
    whole process; the console turns categories on and off."""

    def __init__(self):
        self.enabled: set[str] = set()

    def on(self, category: str) -> bool:
        return category in self.enabled

    def set(self, category: str, value: bool = True) -> None:
        if value:
            self.enabled.add(category)
        else:
            self.enabled.discard(category)

    def clear(self) -> None:
        self.enabled.clear()

    def line(self, category: str, text: str) -> None:
        """Emit a debug line if the category is on."""
        if category in self.enabled:
            log.emit(LogLevel.debug, "{ios_message}", ios_debug=category,
                     ios_severity=7, ios_message=text)


debugging = Debugging()
