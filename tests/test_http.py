"""HTTP inspector (cbac.inspect.http): request framing (smuggling), response
tracking, Java blocking, in every segmentation."""

from hypothesis import given, settings, strategies as st
from twisted.trial import unittest

from cbac.config.model import InspectProtocol
from cbac.inspect import http
from cbac.inspect.api import CLIENT, SERVER, IInspectorFactory, InspectContext
from tests.test_ftp import Engine, ip, run

CLI = ip("10.1.1.2")
SRV = ip("192.0.2.80")
PEERS = "initiator (10.1.1.2:40000) responder (192.0.2.80:80)"


def make(java_list=None, permitted=None, debug=False):
    def f():
        c = InspectContext(client_addr=CLI, client_port=40000, server_addr=SRV, server_port=80,
                           rule=InspectProtocol("http", java_list=java_list), debug=debug)
        if permitted is None:
            return http.factory(c)
        return http.HttpInspectorFactory(permitted)(c)
    return f


def joined(transcript, d):
    return b"".join(x for dd, x in transcript if dd == d)


GET = b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 11\r\n\r\nhello world"
POST = (b"POST /form HTTP/1.1\r\nHost: www.example.com\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 13\r\n\r\nname=a&x=1234")
CHUNKED_POST = (b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n7;ext=1;q=\"a b\"\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n")
CHUNKED_OK = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"4\r\nabcd\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n")

NORMAL = [
    (CLIENT, GET), (SERVER, OK),
    (CLIENT, POST), (SERVER, b"HTTP/1.1 100 Continue\r\n\r\n"), (SERVER, OK),
    (CLIENT, CHUNKED_POST), (SERVER, CHUNKED_OK),
    # pipelined: HEAD, conditional GET, plain GET in one segment
    (CLIENT, b"\r\nHEAD /big HTTP/1.1\r\nHost: h\r\n\r\n"
             b"GET /cached HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"x\"\r\n\r\n" + GET),
    (SERVER, b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
             b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n" + OK),
    (CLIENT, b"GET /dup HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n"),
    (SERVER, b"HTTP/1.1 204 No Content\r\n\r\n"),
    (CLIENT, b"GET /last HTTP/1.0\r\nConnection: close\r\n\r\n"),
    (SERVER, b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"),
]


class NormalTrafficTests(unittest.TestCase):
    def test_normal_traffic_passes_unchanged(self):
        eng = run(make(), NORMAL, close=True)
        self.assertEqual(eng.output(CLIENT), joined(NORMAL, CLIENT))
        self.assertEqual(eng.output(SERVER), joined(NORMAL, SERVER))
        self.assertEqual((eng.log, eng.reset, eng.edits), ([], False, [[], []]))
        self.assertEqual(eng.insp.state_summary(),
                         "HTTP state: request head, response body until close, "
                         "requests 8, responses 8, pending 0")

    def test_factory(self):
        self.assertTrue(IInspectorFactory.providedBy(http.factory))
        self.assertEqual(http.factory.name, "http")

    def test_request_head_is_held_until_complete(self):
        eng = Engine(make()())
        eng.feed(CLIENT, GET[:-2])
        self.assertEqual(eng.held(CLIENT), len(GET) - 2)
        eng.feed(CLIENT, b"\r")
        self.assertEqual(eng.held(CLIENT), len(GET) - 1)
        eng.feed(CLIENT, b"\n")
        self.assertEqual(eng.held(CLIENT), 0)
        self.assertEqual(eng.output(CLIENT), GET)

    def test_bodies_pass_without_holding(self):
        eng = Engine(make()())
        eng.feed(CLIENT, POST[:-5])
        self.assertEqual(eng.held(CLIENT), 0)
        eng = Engine(make()())
        head_len = CHUNKED_POST.index(b"\r\n\r\n") + 4
        eng.feed(CLIENT, CHUNKED_POST[:head_len + 6])      # "5\r\nhel"
        self.assertEqual(eng.held(CLIENT), 0)
        eng.feed(CLIENT, CHUNKED_POST[head_len + 6:head_len + 13])   # "lo\r\n7;e"
        self.assertEqual(eng.held(CLIENT), 3)               # chunk-size line held
        # responses are never held
        eng.feed(SERVER, OK[:20])
        self.assertEqual(eng.held(SERVER), 0)

    def test_debug_lines(self):
        eng = run(make(debug=True), NORMAL[:2])
        self.assertEqual(eng.debug, [
            "CBAC HTTP: request GET /index.html HTTP/1.1 from " + PEERS + ", no body",
            "CBAC HTTP: response 200, length 11"])
        self.assertEqual(run(make(), NORMAL).debug, [])

    def test_upgrade_and_connect_stop_inspection(self):
        tr = [(CLIENT, b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
              (SERVER, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"),
              (CLIENT, b"\x81\x85\x00\x00\x00\x00hello not http\n\r")]
        eng = run(make(), tr)
        self.assertTrue(eng.opaque)
        self.assertFalse(eng.reset)
        self.assertEqual(eng.output(CLIENT), joined(tr, CLIENT))
        tr = [(CLIENT, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
              (SERVER, b"HTTP/1.1 200 Connection established\r\n\r\n"),
              (CLIENT, b"\x16\x03\x01\x02\x00\x01")]
        eng = run(make(), tr)
        self.assertTrue(eng.opaque)
        self.assertEqual(eng.output(CLIENT), joined(tr, CLIENT))


class SmugglingTests(unittest.TestCase):
    def refused(self, request, reason, before=b""):
        tr = [(CLIENT, before + request)]
        eng = run(make(), tr)
        self.assertTrue(eng.reset, request)
        self.assertEqual(eng.reasons, ["http " + reason])
        self.assertEqual(eng.messages(), [
            "%%FW-3-HTTP_PROTOCOL_VIOLATION: HTTP protocol violation (%s) from %s -- session reset"
            % (http.REASONS[reason], PEERS)])
        # nothing of the refused request reached the server
        self.assertEqual(eng.output(CLIENT), before)
        # and the same one byte at a time
        eng1 = run(make(), tr, splits=1)
        self.assertEqual((eng1.reasons, eng1.output(CLIENT)), (eng.reasons, before))
        return eng

    def test_cl_and_te(self):
        self.refused(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"0\r\n\r\nX", "cl-and-te")

    def test_cl_conflict(self):
        self.refused(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\nContent-Length: 5\r\n\r\nhello!",
                     "cl-conflict")
        self.refused(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6, 5\r\n\r\nhello!", "cl-conflict")

    def test_cl_invalid(self):
        for v in (b"+5", b"-1", b"0x5", b"5 5", b"", b"5.0", b"1" * 19):
            self.refused(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: " + v + b"\r\n\r\nhello",
                         "cl-invalid")

    def test_te_forms(self):
        base = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: %s\r\n\r\n0\r\n\r\n"
        self.refused(base % b"gzip", "te-not-chunked")
        self.refused(base % b"chunked, gzip", "te-not-chunked")
        self.refused(base % b"chunked, chunked", "te-not-chunked")
        self.refused(base % b"xchunked", "te-not-chunked")
        self.refused(base % b"identity, chunked", "te-unknown")
        self.refused(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "te-not-chunked")
        self.refused(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "te-http10")
        # accepted: a coding before chunked, case-insensitive
        eng = run(make(), [(CLIENT, base % b"gzip, CHUNKED")])
        self.assertEqual(eng.log, [])

    def test_bad_chunks(self):
        head = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        for body, reason in ((b"0x5\r\nhello\r\n0\r\n\r\n", "chunk-size"),
                             (b"5 \r\nhello\r\n0\r\n\r\n", "chunk-size"),
                             (b"-5\r\nhello\r\n0\r\n\r\n", "chunk-size"),
                             (b"\r\nhello\r\n0\r\n\r\n", "chunk-size"),
                             (b"5\nhello\r\n0\r\n\r\n", "chunk-size"),
                             (b"5;a\x01\r\nhello\r\n0\r\n\r\n", "chunk-size"),
                             (b"100000000\r\n", "chunk-too-large"),
                             (b"5\r\nhelloX\r\n0\r\n\r\n", "chunk-end"),
                             (b"5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n", "trailer")):
            tr = [(CLIENT, head + body)]
            eng = run(make(), tr)
            self.assertEqual(eng.reasons, ["http " + reason], body)
            self.assertEqual(run(make(), tr, splits=1).reasons, eng.reasons)
            self.assertEqual(eng.messages(), [
                "%%FW-3-HTTP_PROTOCOL_VIOLATION: HTTP protocol violation (%s) from %s -- session reset"
                % (http.REASONS[reason], PEERS)])

    def test_obs_fold_and_bare_cr_lf(self):
        self.refused(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n", "obs-fold")
        self.refused(b"GET / HTTP/1.1\r\nHost: h\r\n Transfer-Encoding: chunked\r\n\r\n", "obs-fold")
        self.refused(b"GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", "bare-lf")
        self.refused(b"GET / HTTP/1.1\n\n", "bare-lf")
        self.refused(b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", "bare-cr")

    def test_field_syntax(self):
        self.refused(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n", "field-name")
        self.refused(b"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", "field-name")
        self.refused(b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n", "field-value")
        self.refused(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "host-duplicate")

    def test_request_line_junk(self):
        for line in (b"GET /\r\n\r\n", b"GET  / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1 \r\n\r\n",
                     b" GET / HTTP/1.1\r\n\r\n", b"GET / http/1.1\r\n\r\n", b"\x16\x03\x01\x00\xa5\r\n\r\n",
                     b"G(T / HTTP/1.1\r\n\r\n", b"GET /a b HTTP/1.1\r\n\r\n"):
            self.refused(line, "request-line")
        self.refused(b"GET / HTTP/2.0\r\n\r\n", "version")
        # refused at once, without waiting for the end of the head
        for junk in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"GET /\x00", b"GET\t/"):
            eng = run(make(), [(CLIENT, junk)])
            self.assertEqual((eng.reasons, eng.output(CLIENT)), (["http request-line"], b""))
        self.refused(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "version")

    def test_head_too_long(self):
        eng = self.refused(b"GET / HTTP/1.1\r\nX: " + b"a" * http.MAX_HEAD + b"\r\n\r\n", "head-too-long")
        self.assertEqual(eng.held(CLIENT), len(eng.inp[CLIENT]))

    def test_head_of_exactly_max_head_passes_one_more_is_refused(self):
        """MAX_HEAD counts the whole head with its final CRLF CRLF: a head of
        exactly MAX_HEAD bytes passes whole, one byte more is refused."""
        def head(n):
            start = b"GET / HTTP/1.1\r\nHost: h\r\nX: "
            h = start + b"a" * (n - len(start) - 4) + b"\r\n\r\n"
            self.assertEqual(len(h), n)
            return h
        ok = head(http.MAX_HEAD)
        eng = run(make(), [(CLIENT, ok)])
        self.assertEqual((eng.reasons, eng.output(CLIENT)), ([], ok))
        self.refused(head(http.MAX_HEAD + 1), "head-too-long")

    def test_smuggled_request_after_valid_one_is_seen(self):
        first = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
        second = (b"GET /admin HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        self.refused(second, "cl-and-te", before=first)
        # hidden in a keep-alive chunked body's end
        first = (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"3\r\nabc\r\n0\r\n\r\n")
        self.refused(b"GET / HTTP/1.1\r\nHost: h\r\n X: y\r\n\r\n", "obs-fold", before=first)

    def test_too_many_pending_requests(self):
        eng = run(make(), [(CLIENT, GET * http.MAX_PIPELINE)])
        self.assertEqual((eng.reset, eng.log), (False, []))
        self.refused(GET, "pipeline", before=GET * http.MAX_PIPELINE)

    def test_duplicate_identical_cl_is_accepted(self):
        tr = [(CLIENT, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"
                       + GET)]
        eng = run(make(), tr)
        self.assertEqual((eng.log, eng.output(CLIENT)), ([], tr[0][1]))

    def test_incomplete_head_at_close_is_released(self):
        eng = run(make(), [(CLIENT, b"GET / HTTP/1.1\r\nHost")], close=True)
        self.assertEqual((eng.held(CLIENT), eng.log), (0, []))


class JavaTests(unittest.TestCase):
    BLOCK = ("%FW-3-HTTP_JAVA_BLOCK: JAVA applet is blocked from (192.0.2.80:80) "
             "to (10.1.1.2:40000).")

    def applet(self, response, request=GET, **kw):
        tr = [(CLIENT, request), (SERVER, response)]
        return run(make(**kw), tr), run(make(**kw), tr, splits=1)

    def assertBlocked(self, response, request=GET, **kw):
        for eng in self.applet(response, request, **kw):
            self.assertTrue(eng.reset)
            self.assertEqual(eng.reasons, ["http java"])
            self.assertEqual(eng.messages(), [self.BLOCK])
            self.assertNotIn(b"\xca\xfe\xba\xbe", eng.output(SERVER))

    def assertPassed(self, response, request=GET, **kw):
        for eng in self.applet(response, request, **kw):
            self.assertFalse(eng.reset)
            self.assertEqual(eng.log, [])
            self.assertEqual(eng.output(SERVER), response)

    CLASS = b"\xca\xfe\xba\xbe\x00\x00\x00\x34" + b"\x00" * 40
    TYPED = (b"HTTP/1.1 200 OK\r\nContent-Type: application/x-java-applet\r\nContent-Length: %d\r\n\r\n"
             % len(CLASS)) + CLASS
    UNTYPED = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n"
               % len(CLASS)) + CLASS
    CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n\xca\xfe\r\n"
               b"2\r\n\xba\xbe\r\n30\r\n" + b"\x00" * 48 + b"\r\n0\r\n\r\n")

    def test_blocked_by_content_type(self):
        self.assertBlocked(self.TYPED, java_list="10", permitted=lambda a: False)
        jar = b"HTTP/1.1 200 OK\r\nContent-Type: Application/Java-Archive; x=1\r\nContent-Length: 4\r\n\r\nPK\x03\x04"
        for eng in self.applet(jar, java_list="10", permitted=lambda a: False):
            self.assertEqual(eng.messages(), [self.BLOCK])

    def test_blocked_by_magic(self):
        self.assertBlocked(self.UNTYPED, java_list="10", permitted=lambda a: False)
        self.assertBlocked(self.CHUNKED, java_list="10", permitted=lambda a: False)
        until_close = b"HTTP/1.0 200 OK\r\n\r\n" + self.CLASS
        self.assertBlocked(until_close, java_list="10", permitted=lambda a: False)

    def test_blocked_by_class_request(self):
        req = b"GET /applets/Hello.CLASS?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"
        resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
        for eng in self.applet(resp, req, java_list="10", permitted=lambda a: False):
            self.assertEqual(eng.messages(), [self.BLOCK])
        # an error page for a .class is not an applet
        self.assertPassed(b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!", req,
                          java_list="10", permitted=lambda a: False)

    def test_permitted_site_passes(self):
        seen = []

        def permitted(addr):
            seen.append(addr)
            return addr == SRV

        self.assertPassed(self.TYPED, java_list="10", permitted=permitted)
        self.assertPassed(self.UNTYPED, java_list="10", permitted=permitted)
        self.assertEqual(set(seen), {SRV})

    def test_no_java_list_never_blocks(self):
        self.assertPassed(self.TYPED)
        self.assertPassed(self.UNTYPED)

    def test_java_list_without_callable_blocks_all(self):
        self.assertBlocked(self.TYPED, java_list="99")

    def test_unfollowable_response_fails_closed_with_java_list(self):
        tr = [(CLIENT, GET), (SERVER, b"HTTP/1.1 200 OK\r\nX: " + b"a" * 40000),
              (SERVER, b"a" * 40000)]
        eng = run(make(java_list="10", permitted=lambda a: False), tr)
        self.assertEqual(eng.reasons, ["http response"])
        # without Java blocking the responses are simply no longer followed
        eng = run(make(), tr + [(CLIENT, GET)])
        self.assertEqual((eng.reset, eng.log), (False, []))
        self.assertIn("response not followed", eng.insp.state_summary())
        # and requests are no longer queued for responses (no false "pipeline")
        eng = run(make(), tr + [(CLIENT, GET * (http.MAX_PIPELINE + 5))])
        self.assertEqual((eng.reset, eng.log), (False, []))
        self.assertIn("pending 0", eng.insp.state_summary())

    def test_ordinary_responses_pass_with_java_list(self):
        self.assertPassed(OK, java_list="10", permitted=lambda a: False)
        self.assertPassed(CHUNKED_OK, java_list="10", permitted=lambda a: False)


def _splits(transcript):
    return st.dictionaries(st.integers(0, len(transcript) - 1),
                           st.lists(st.integers(1, 400), max_size=8), max_size=len(transcript))


BAD_TAIL = NORMAL[:6] + [
    (CLIENT, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nabcd"
             b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"4\r\nwxyz\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n"
             b"Content-Length: 2\r\n\r\nab")]


class SegmentationTests(unittest.TestCase):
    def result(self, eng):
        # after a reset the engine feeds nothing more, so what is "held"
        # depends on how much came in the last segment: not compared then
        held = None if eng.reset else (eng.held(CLIENT), eng.held(SERVER))
        return (eng.output(CLIENT), eng.output(SERVER), eng.log, eng.reasons, held,
                eng.insp.state_summary())

    def test_one_byte_at_a_time(self):
        for tr in (NORMAL, BAD_TAIL):
            self.assertEqual(self.result(run(make(), tr, splits=1)), self.result(run(make(), tr)))
        self.assertEqual(run(make(), BAD_TAIL).reasons, ["http cl-conflict"])

    @settings(max_examples=120, deadline=None)
    @given(_splits(NORMAL))
    def test_any_split_points_normal(self, splits):
        kw = dict(java_list="10", permitted=lambda a: False)
        self.assertEqual(self.result(run(make(**kw), NORMAL, splits=splits)),
                         self.result(run(make(**kw), NORMAL)))

    @settings(max_examples=80, deadline=None)
    @given(_splits(BAD_TAIL))
    def test_any_split_points_bad(self, splits):
        self.assertEqual(self.result(run(make(), BAD_TAIL, splits=splits)),
                         self.result(run(make(), BAD_TAIL)))

    @settings(max_examples=150, deadline=None)
    @given(st.binary(max_size=300), st.binary(max_size=300), st.lists(st.integers(1, 299), max_size=8))
    def test_junk_never_crashes(self, a, b, cuts):
        for pre in ([], [(CLIENT, GET)]):
            tr = pre + [(CLIENT, a), (SERVER, b)]
            i = len(pre)
            eng = run(make(java_list="1", permitted=lambda x: False), tr,
                      splits={i: cuts, i + 1: cuts}, close=True)
            one = run(make(java_list="1", permitted=lambda x: False), tr, splits=1, close=True)
            self.assertEqual((eng.output(CLIENT), eng.reasons), (one.output(CLIENT), one.reasons))

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.sampled_from([GET, POST, CHUNKED_POST,
                                     b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n"]), min_size=1, max_size=6),
           st.lists(st.integers(1, 600), max_size=10))
    def test_pipelines_pass(self, reqs, cuts):
        data = b"".join(reqs)
        eng = run(make(), [(CLIENT, data)], splits={0: cuts})
        self.assertEqual((eng.output(CLIENT), eng.log), (data, []))
        self.assertIn("requests %d," % len(reqs), eng.insp.state_summary())


# ---------------------------------------------------------------------------
# Live: Python's http.server and real clients on loopback, through the relay
# of test_ftp (it applies verdicts as the engine does).

from http import client as httpclient, server as httpserver  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402

from twisted.internet import defer, threads, utils  # noqa: E402

from tests.test_ftp import LOOP, LiveRelay  # noqa: E402


class LiveHttpTests(unittest.TestCase):
    timeout = 20

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="cbac-http-")
        self.files = {"index.html": b"<html>hello</html>\n" * 50,
                      "Hello.class": b"\xca\xfe\xba\xbe\x00\x00\x00\x34" + os.urandom(3000)}
        for name, data in self.files.items():
            with open(os.path.join(self.dir, name), "wb") as fh:
                fh.write(data)
        seen = self.seen = []
        root = self.dir

        class Handler(httpserver.SimpleHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def __init__(self, *a, **kw):
                super().__init__(*a, directory=root, **kw)

            def log_message(self, fmt, *args):
                seen.append(self.requestline)

        class Server(httpserver.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass                    # resets are expected here

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        self.addCleanup(self._stop)

    def _stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)

    def relay(self, **kw):
        def make():
            c = InspectContext(client_addr=LOOP, client_port=0, server_addr=LOOP, server_port=80,
                               rule=InspectProtocol("http", java_list=kw.get("java_list")))
            return http.HttpInspectorFactory(kw.get("permitted"))(c)
        return LiveRelay(self, make, self.server.server_address[1])

    @defer.inlineCallbacks
    def test_keep_alive_and_pipelined_pass(self):
        relay = self.relay(java_list="10", permitted=lambda a: a == LOOP)
        port = relay.number

        def client():
            c = httpclient.HTTPConnection("127.0.0.1", port, timeout=5)
            bodies = []
            for path in ("/index.html", "/Hello.class", "/missing"):
                c.request("GET", path)
                r = c.getresponse()
                bodies.append((r.status, r.read()))
            c.close()
            # pipelined, one segment
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /index.html HTTP/1.1\r\nHost: a\r\n\r\nHEAD /index.html HTTP/1.1\r\nHost: a\r\n\r\n"
                      b"GET /index.html HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            s.close()
            return bodies, data

        bodies, data = yield threads.deferToThread(client)
        self.assertEqual(bodies[0], (200, self.files["index.html"]))
        self.assertEqual(bodies[1], (200, self.files["Hello.class"]))
        self.assertEqual(bodies[2][0], 404)
        self.assertEqual(data.count(b"HTTP/1.0 200 OK") + data.count(b"HTTP/1.1 200 OK"), 3)
        self.assertEqual(data.count(self.files["index.html"]), 2)
        self.assertEqual((relay.log, relay.resets), ([], []))

        out, err, code = yield utils.getProcessOutputAndValue(
            "/usr/bin/curl", ["-sS", "--max-time", "10", "http://127.0.0.1:%d/index.html" % port,
                              "http://127.0.0.1:%d/index.html" % port], env={"PATH": "/usr/bin:/bin"})
        self.assertEqual((code, out), (0, self.files["index.html"] * 2))

    @defer.inlineCallbacks
    def test_smuggled_request_never_reaches_server(self):
        relay = self.relay()
        port = relay.number

        def client():
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n"
                      b"GET /smuggled HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            try:
                while s.recv(65536):
                    pass
                return "closed"
            except ConnectionResetError:
                return "reset"
            finally:
                s.close()

        how = yield threads.deferToThread(client)
        self.assertEqual(how, "reset")
        self.assertEqual(relay.resets, ["http cl-and-te"])
        self.assertFalse(any("smuggled" in r for r in self.seen), self.seen)

    @defer.inlineCallbacks
    def test_java_applet_blocked(self):
        relay = self.relay(java_list="10", permitted=lambda a: False)
        port = relay.number

        def client():
            c = httpclient.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/index.html")
            first = c.getresponse().read()
            c.request("GET", "/Hello.class")
            try:
                r = c.getresponse()
                return first, r.read()
            except (ConnectionError, httpclient.HTTPException) as e:
                return first, e

        first, second = yield threads.deferToThread(client)
        self.assertEqual(first, self.files["index.html"])
        self.assertIsInstance(second, Exception)
        self.assertEqual(relay.messages(), [
            "%FW-3-HTTP_JAVA_BLOCK: JAVA applet is blocked from (127.0.0.1:80) to (127.0.0.1:0)."])


class StateMachineTests(unittest.TestCase):
    """Each direction's framing states and transitions are the table at the
    top of cbac/inspect/http.py; a change outside it raises (the engine
    resets the session); LOST and UNTIL_CLOSE are final."""

    def test_a_transition_not_in_the_table_raises(self):
        from cbac.inspect.fsm import IllegalTransition
        side = http._Side()
        self.assertEqual(side.mode, http._HEAD)
        http._set(side, http._HEAD)                 # staying is no change
        self.assertRaises(IllegalTransition, http._set, side, http._CHUNK_END)
        self.assertRaises(IllegalTransition, http._set, side, http._TRAILER)
        http._set(side, http._CHUNK_SIZE)
        http._set(side, http._CHUNK_DATA)
        self.assertRaises(IllegalTransition, http._set, side, http._HEAD)
        self.assertEqual(side.mode, http._CHUNK_DATA)
        for final in (http._LOST, http._UNTIL_CLOSE):
            side.mode = final
            for state in http.TRANSITIONS:
                if state != final:
                    self.assertRaises(IllegalTransition, http._set, side, state)


class ChunkBoundaryTests(unittest.TestCase):
    """A chunk of MAX_CHUNK_SIZE bytes is accepted, one more refused; a
    trailer section of MAX_HEAD bytes passes, one more is refused.  (Each
    fails with its comparison flipped.)"""

    HEAD = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"

    def test_chunk_size(self):
        eng = run(make(), [(CLIENT, self.HEAD + b"%x\r\n" % http.MAX_CHUNK_SIZE)])
        self.assertEqual(eng.reasons, [])
        eng = run(make(), [(CLIENT, self.HEAD + b"%x\r\n" % (http.MAX_CHUNK_SIZE + 1))])
        self.assertEqual(eng.reasons, ["http chunk-too-large"])

    def test_trailer_size(self):
        def req(n):                     # a trailer section of n bytes, final CRLF included
            return self.HEAD + b"0\r\nX: " + b"a" * (n - 7) + b"\r\n\r\n"
        eng = run(make(), [(CLIENT, req(http.MAX_HEAD))])
        self.assertEqual((eng.reasons, eng.output(CLIENT)), ([], req(http.MAX_HEAD)))
        eng = run(make(), [(CLIENT, req(http.MAX_HEAD + 1))])
        self.assertEqual(eng.reasons, ["http head-too-long"])
