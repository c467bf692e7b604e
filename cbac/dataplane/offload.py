"""The kernel fast path: load ``fastpath.bpf.o`` and drive its maps.

Python decides, the kernel repeats decisions (``cbac/dataplane/bpf/
fastpath.bpf.c`` says what the two programs do).  This module is the thin
layer between the two: ctypes calls into ``libbpf.so.1`` (measured at a few
microseconds per map update; a ``bpftool`` subprocess costs a millisecond),
the tc clsact attachment of each port, the socket filter for each port's
AF_PACKET socket, and the flow and TCP-state maps.

Everything here is optional: :func:`open_offload` returns ``None`` with a
reason when the object file, libbpf, the BPF syscall or the permission is
missing, and cbac runs as before (one log line says so).

The map layouts must match the C structs (``tests/test_offload`` proves them
on the wire: a hand-installed entry rewrites a frame as packed here, and its
counters and window state read back at these offsets):

- key ``struct flow_key``: ``src dst sport dport`` as the frame arrives
  (network order: ``frame[26:38]`` of an untagged IHL-5 frame) + protocol
  (u32, host order);
- value ``struct flow_val`` (:data:`FLOW_VAL`);
- ``tcp_states[2 * slot + d]``: direction d's ``end maxend_peer maxwin scale``
  (u32): the fields packets of d update (see the C file).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import socket
import struct

from cbac.dataplane.linux import in_netns

#: ``cbac_tc`` / ``cbac_sf`` statistics (index = ST_* in the C file)
STAT_NAMES = ("forwarded", "socket-filter-dropped", "miss", "not-eligible", "out-of-window",
              "oversize", "wrong-port", "no-socket-filter-note", "error",
              "socket-filter-out-of-window", "socket-filter-wrong-port")

FLOW_KEY = struct.Struct("=12sI")
#: nsrc ndst nsport ndport (raw, network order), in/out ifindex, in_mac,
#: dmac, smac, dir, flags, slot, packets, bytes, last (ns)
FLOW_VAL = struct.Struct("=4s4s2s2sII6s6s6sBBI4xQQQ")
#: one direction's TCP state: end, maxend_peer (MAXEND of the other
#: direction), maxwin, scale
TCP_DIR = struct.Struct("=4I")
F_TCP = 0x01
F_REWRITE = 0x02

SO_ATTACH_BPF = 50
SO_DETACH_BPF = 27
SIOCGIFINDEX = 0x8933
BPF_TC_INGRESS = 1
BPF_TC_EGRESS = 2
BPF_ANY = 0
BPF_F_LOCK = 4

_HERE = os.path.dirname(os.path.abspath(__file__))
OBJECT_NAME = "fastpath.bpf.o"


def default_object_path():
    """Where the built object is looked for: ``$CBAC_BPF_OBJECT``, else next
    to its source (``make bpf`` / the package build put it there)."""
    env = os.environ.get("CBAC_BPF_OBJECT")
    if env:
        return env
    return os.path.join(_HERE, "bpf", OBJECT_NAME)


def clang_command(src, out):
    """The build command (the Makefile and debian/rules run the same)."""
    import platform
    arch = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}.get(platform.machine(), "")
    inc = ["-I/usr/include/" + arch] if arch and os.path.isdir("/usr/include/" + arch) else []
    return ["clang", "-O2", "-g", "-Wall", "-target", "bpf"] + inc + ["-c", src, "-o", out]


def build_object(out=None):
    """Compile ``bpf/fastpath.bpf.c`` (tests, when ``make`` has not run);
    returns None or the reason it failed."""
    import shutil
    import subprocess
    if shutil.which("clang") is None:
        return "clang is not installed"
    import tempfile
    src = os.path.join(_HERE, "bpf", "fastpath.bpf.c")
    out = out or default_object_path()
    # a temporary file of our own, renamed over ``out``: two processes
    # building at once (trial -j2 workers) never see a half-written object
    # nor rename each other's file away
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(out) + ".", suffix=".tmp",
                               dir=os.path.dirname(out) or ".")
    os.close(fd)
    try:
        r = subprocess.run(clang_command(src, tmp), capture_output=True, text=True)
        if r.returncode != 0:
            return (r.stderr or r.stdout).strip()[-500:]
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return None


class OffloadUnavailable(Exception):
    """The kernel fast path cannot be used here (the message says why)."""


class _TcHook(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("ifindex", ctypes.c_int),
                ("attach_point", ctypes.c_int), ("parent", ctypes.c_uint32),
                ("_pad", ctypes.c_uint32)]


class _TcOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("prog_fd", ctypes.c_int),
                ("flags", ctypes.c_uint32), ("prog_id", ctypes.c_uint32),
                ("handle", ctypes.c_uint32), ("priority", ctypes.c_uint32),
                ("_pad", ctypes.c_uint32)]


_lib = None


def _libbpf():
    global _lib
    if _lib is not None:
        return _lib
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as e:
        raise OffloadUnavailable("libbpf not found (%s): install libbpf1" % e) from e
    vp = ctypes.c_void_p
    for fn, res, args in (
            ("bpf_object__open_file", vp, [ctypes.c_char_p, vp]),
            ("bpf_object__load", ctypes.c_int, [vp]),
            ("bpf_object__close", None, [vp]),
            ("bpf_object__find_map_by_name", vp, [vp, ctypes.c_char_p]),
            ("bpf_object__find_program_by_name", vp, [vp, ctypes.c_char_p]),
            ("bpf_map__set_max_entries", ctypes.c_int, [vp, ctypes.c_uint32]),
            ("bpf_map__fd", ctypes.c_int, [vp]),
            ("bpf_program__fd", ctypes.c_int, [vp]),
            ("bpf_tc_hook_create", ctypes.c_int, [vp]),
            ("bpf_tc_hook_destroy", ctypes.c_int, [vp]),
            ("bpf_tc_attach", ctypes.c_int, [vp, vp]),
            ("bpf_map_update_elem", ctypes.c_int, [ctypes.c_int, vp, vp, ctypes.c_uint64]),
            ("bpf_map_lookup_elem", ctypes.c_int, [ctypes.c_int, vp, vp]),
            ("bpf_map_lookup_elem_flags", ctypes.c_int, [ctypes.c_int, vp, vp, ctypes.c_uint64]),
            ("bpf_map_delete_elem", ctypes.c_int, [ctypes.c_int, vp]),
            ("bpf_map_get_next_key", ctypes.c_int, [ctypes.c_int, vp, vp]),
            ("bpf_map_lookup_batch", ctypes.c_int,
             [ctypes.c_int, vp, vp, vp, vp, ctypes.POINTER(ctypes.c_uint32), vp]),
            ("libbpf_num_possible_cpus", ctypes.c_int, []),
    ):
        try:
            f = getattr(lib, fn)
        except AttributeError as e:
            raise OffloadUnavailable("libbpf lacks %s (too old)" % fn) from e
        f.restype = res
        f.argtypes = args
    _lib = lib
    return lib


def _err(what, rc=None):
    e = ctypes.get_errno() if rc is None or rc == -1 else -rc
    if not e:
        e = errno.EINVAL
    return OSError(e, "%s: %s" % (what, os.strerror(e)))


def ifindex(sock, device):
    """The index of ``device`` in the namespace of ``sock``."""
    req = struct.pack("16si12x", device.encode(), 0)
    return struct.unpack_from("i", fcntl.ioctl(sock.fileno(), SIOCGIFINDEX, req), 16)[0]


def flow_key(arrival: bytes, proto: int) -> bytes:
    """The map key of a packet arriving with ``src dst sport dport``
    (12 bytes, network order) and IP protocol ``proto``."""
    return FLOW_KEY.pack(arrival, proto)


class Offload:
    """A loaded ``fastpath.bpf.o``: its programs, maps and tc attachments.

    ``max_flows`` bounds the flow map (two entries per offloaded session);
    the TCP state array has ``max_flows // 2`` slots.
    """

    def __init__(self, path=None, max_flows=65536):
        self.path = path or default_object_path()
        if not os.path.exists(self.path):
            raise OffloadUnavailable("no eBPF object %s (not built: make bpf)" % self.path)
        lib = self.lib = _libbpf()
        self.max_flows = max(2, int(max_flows))
        self.slots = max(1, self.max_flows // 2)     # TCP slots: 2 entries each
        ctypes.set_errno(0)
        obj = lib.bpf_object__open_file(self.path.encode(), None)
        if not obj:
            raise OffloadUnavailable("cannot open %s: %s" % (self.path, os.strerror(ctypes.get_errno() or errno.EINVAL)))
        self._obj = obj
        try:
            for name, n in ((b"flows", self.max_flows), (b"tcp_states", 2 * self.slots)):
                m = lib.bpf_object__find_map_by_name(obj, name)
                if not m or lib.bpf_map__set_max_entries(m, n) != 0:
                    raise OffloadUnavailable("%s: map %s missing" % (self.path, name.decode()))
            rc = lib.bpf_object__load(obj)
            if rc != 0:
                raise OffloadUnavailable("the kernel refused the eBPF programs (%s)" % os.strerror(-rc if rc < 0 else rc))
            self.fd = {}
            for name in ("flows", "tcp_states", "notes", "stats", "config"):
                self.fd[name] = lib.bpf_map__fd(lib.bpf_object__find_map_by_name(obj, name.encode()))
            self.tc_fd = lib.bpf_program__fd(lib.bpf_object__find_program_by_name(obj, b"cbac_tc"))
            self.sf_fd = lib.bpf_program__fd(lib.bpf_object__find_program_by_name(obj, b"cbac_sf"))
        except BaseException:
            lib.bpf_object__close(obj)
            self._obj = None
            raise
        self.ncpus = max(1, lib.libbpf_num_possible_cpus())
        self.attached = []            # (netns, ifindex)
        self._kbuf = ctypes.create_string_buffer(FLOW_KEY.size)
        self._vbuf = ctypes.create_string_buffer(FLOW_VAL.size)

    # --- attachment --------------------------------------------------------

    def attach_tc(self, ifidx, netns=None):
        """Attach ``cbac_tc`` at the clsact ingress of device ``ifidx`` (in
        ``netns``: an ``ip netns`` name or None for the current one)."""
        hook = _TcHook(sz=ctypes.sizeof(_TcHook), ifindex=ifidx, attach_point=BPF_TC_INGRESS)
        opts = _TcOpts(sz=ctypes.sizeof(_TcOpts), prog_fd=self.tc_fd, flags=1, handle=1, priority=1)
        with in_netns(netns):
            rc = self.lib.bpf_tc_hook_create(ctypes.byref(hook))
            if rc != 0 and rc != -errno.EEXIST:
                raise _err("tc clsact on ifindex %d" % ifidx, rc)
            rc = self.lib.bpf_tc_attach(ctypes.byref(hook), ctypes.byref(opts))
            if rc != 0:
                raise _err("tc attach on ifindex %d" % ifidx, rc)
        self.attached.append((netns, ifidx))

    def detach_tc(self, ifidx, netns=None):
        hook = _TcHook(sz=ctypes.sizeof(_TcHook), ifindex=ifidx,
                       attach_point=BPF_TC_INGRESS | BPF_TC_EGRESS)
        with in_netns(netns):
            self.lib.bpf_tc_hook_destroy(ctypes.byref(hook))
        try:
            self.attached.remove((netns, ifidx))
        except ValueError:
            pass

    def attach_socket(self, sock):
        """Attach the socket filter ``cbac_sf`` to an AF_PACKET socket."""
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_BPF, self.sf_fd)

    def set_standalone(self, on: bool):
        """Standalone: the tc program decides alone (no socket filter in
        front of it: only for testing the program by itself)."""
        self._update("config", struct.pack("=I", 0), struct.pack("=I", 1 if on else 0))

    def close(self):
        for netns, ifidx in list(self.attached):
            try:
                self.detach_tc(ifidx, netns)
            except OSError:
                pass
        if self._obj is not None:
            self.lib.bpf_object__close(self._obj)
            self._obj = None

    # --- maps --------------------------------------------------------------

    def _update(self, m, key, value, flags=BPF_ANY):
        rc = self.lib.bpf_map_update_elem(self.fd[m], key, value, flags)
        if rc != 0:
            raise _err("update %s" % m, rc)

    def put_flow(self, key: bytes, value: bytes):
        """Install or replace one flow entry (packed :data:`FLOW_VAL`)."""
        rc = self.lib.bpf_map_update_elem(self.fd["flows"], key, value, BPF_ANY)
        if rc != 0:
            raise _err("flow map update", rc)

    def delete_flow(self, key: bytes) -> bool:
        return self.lib.bpf_map_delete_elem(self.fd["flows"], key) == 0

    def get_flow(self, key: bytes):
        """The unpacked value tuple of ``key``, or None."""
        vb = self._vbuf
        if self.lib.bpf_map_lookup_elem(self.fd["flows"], key, vb) != 0:
            return None
        return FLOW_VAL.unpack(vb.raw)

    def counters(self, keys):
        """``{key: (packets, bytes, last_ns)}`` of the given flow keys that
        are in the map (one lookup each)."""
        out = {}
        vb = self._vbuf
        look = self.lib.bpf_map_lookup_elem
        fd = self.fd["flows"]
        for k in keys:
            if look(fd, k, vb) == 0:
                v = FLOW_VAL.unpack(vb.raw)
                out[k] = (v[12], v[13], v[14])
        return out

    def dump_flows(self, batch=1024):
        """Every ``(key bytes, value tuple)`` in the flow map, read with
        ``BPF_MAP_LOOKUP_BATCH`` (``batch`` entries per syscall)."""
        lib = self.lib
        fd = self.fd["flows"]
        keys = ctypes.create_string_buffer(FLOW_KEY.size * batch)
        vals = ctypes.create_string_buffer(FLOW_VAL.size * batch)
        token = ctypes.create_string_buffer(8)
        count = ctypes.c_uint32()
        out = []
        first = True
        while True:
            count.value = batch
            rc = lib.bpf_map_lookup_batch(fd, None if first else token, token, keys, vals,
                                          ctypes.byref(count), None)
            err = ctypes.get_errno() if rc != 0 else 0
            n = count.value
            kr = keys.raw
            vr = vals.raw
            for i in range(n):
                out.append((kr[i * FLOW_KEY.size:(i + 1) * FLOW_KEY.size],
                            FLOW_VAL.unpack_from(vr, i * FLOW_VAL.size)))
            first = False
            if rc != 0:
                if err == errno.ENOENT or rc == -errno.ENOENT:
                    break
                raise _err("flow map batch lookup", rc)
        return out

    def flush_flows(self):
        """Delete every flow entry; returns how many were deleted."""
        n = 0
        for k, _v in self.dump_flows():
            if self.delete_flow(k):
                n += 1
        return n

    def put_tcp_dir(self, slot, d, end, maxend_peer, maxwin, scale):
        """Write direction ``d``'s entry of TCP slot ``slot``."""
        self._update("tcp_states", struct.pack("=I", 2 * slot + d),
                     TCP_DIR.pack(end, maxend_peer, maxwin, max(scale, 0)))

    def get_tcp_dir(self, slot, d):
        """``(end, maxend_peer, maxwin, scale)`` of direction ``d``."""
        buf = ctypes.create_string_buffer(TCP_DIR.size)
        rc = self.lib.bpf_map_lookup_elem(self.fd["tcp_states"], struct.pack("=I", 2 * slot + d), buf)
        if rc != 0:
            raise _err("tcp state lookup", rc)
        return TCP_DIR.unpack(buf.raw)

    def put_tcp_state(self, slot, end, maxend, maxwin, scale):
        """Seed both directions of ``slot`` (each argument a pair: client,
        server, in cbac/inspect/tcp.py's terms)."""
        self.put_tcp_dir(slot, 0, end[0], maxend[1], maxwin[0], scale[0])
        self.put_tcp_dir(slot, 1, end[1], maxend[0], maxwin[1], scale[1])

    def get_tcp_state(self, slot):
        """``(end, maxend, maxwin)`` pairs of ``slot``."""
        e0, me1, w0, _s0 = self.get_tcp_dir(slot, 0)
        e1, me0, w1, _s1 = self.get_tcp_dir(slot, 1)
        return (e0, e1), (me0, me1), (w0, w1)

    def stats(self):
        """The programs' counters, summed over CPUs, by name."""
        out = {}
        fd = self.fd["stats"]
        buf = ctypes.create_string_buffer(8 * self.ncpus)
        for i, name in enumerate(STAT_NAMES):
            if self.lib.bpf_map_lookup_elem(fd, struct.pack("=I", i), buf) == 0:
                out[name] = sum(struct.unpack("=%dQ" % self.ncpus, buf.raw))
            else:
                out[name] = 0
        return out


def open_offload(max_flows=65536, path=None):
    """``(Offload, None)`` or ``(None, reason)``."""
    try:
        return Offload(path, max_flows), None
    except OffloadUnavailable as e:
        return None, str(e)
    except OSError as e:
        return None, "eBPF unavailable: %s" % e


def pack_flow(arrival_new: bytes, in_ifindex, out_ifindex, in_mac, dmac, smac, direction,
              tcp, slot, rewrite, last_ns=0):
    """A packed :data:`FLOW_VAL`: ``arrival_new`` is the rewritten
    ``src dst sport dport`` (12 bytes, network order)."""
    return FLOW_VAL.pack(arrival_new[0:4], arrival_new[4:8], arrival_new[8:10],
                         arrival_new[10:12], in_ifindex, out_ifindex, bytes(in_mac), bytes(dmac),
                         bytes(smac), direction, (F_TCP if tcp else 0) | (F_REWRITE if rewrite else 0),
                         slot, 0, 0, last_ns)


__all__ = ["Offload", "OffloadUnavailable", "open_offload", "flow_key", "pack_flow", "ifindex",
           "default_object_path", "STAT_NAMES", "FLOW_VAL", "FLOW_KEY"]
