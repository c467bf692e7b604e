// SPDX-License-Identifier: GPL-2.0
/* cbac kernel fast path: repeat decisions the Python session engine made.
 *
 * Two programs share one flow map that cbac fills from Python
 * (cbac/dataplane/offload.py):
 *
 *  - "cbac_sf", a socket filter (SO_ATTACH_BPF) on cbac's AF_PACKET
 *    socket of each port.  AF_PACKET taps see an ingress frame before tc
 *    does, so this filter takes the forwarding decision: for a frame of an
 *    offloaded flow that needs nothing from Python it drops the socket's
 *    copy and leaves a per-CPU note "forward this one"; every other frame
 *    reaches Python as before.
 *  - "cbac_tc", a tc clsact ingress classifier (direct action).  It
 *    forwards a frame only when the note says the socket filter dropped
 *    that very frame (same CPU, same softirq, nothing in between), or in
 *    "standalone" mode (no socket filter: lab tests of the program alone).
 *    Forwarding = the NAT rewrite with incremental checksums
 *    (bpf_l3/l4_csum_replace handle CHECKSUM_PARTIAL frames), TTL - 1,
 *    MAC rewrite, bpf_redirect to the egress port.  Anything else returns
 *    TC_ACT_OK: the kernel goes on to the port's nftables ingress chain
 *    (policy drop in a cbac deployment) and Python has its copy.
 *
 * A frame is offloaded only when it is: untagged IPv4, IHL 5 (no
 * options), not a fragment, TTL > 1, TCP with ACK and without
 * SYN/FIN/RST/URG inside the tracked window (the same checks as
 * cbac/inspect/tcp.py track()) or UDP, or an ICMP echo/timestamp request
 * or reply of the type the entry expects (the initiator's request, the
 * responder's reply: cbac/inspect/icmp.py), addressed to the ingress port's MAC,
 * arriving on the port the entry was made for, and within the egress MTU
 * (bpf_check_mtu, GSO aware).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define F_TCP        0x01
#define F_REWRITE    0x02   /* addresses and/or ports change */

struct flow_key {            /* as the frame arrives: frame[26:38] + proto;
                              * ICMP: sport = identifier, dport = 0 */
	__be32 src;
	__be32 dst;
	__be16 sport;
	__be16 dport;
	__u32 proto;
};

struct flow_val {
	__be32 nsrc;             /* rewrite: new addresses and ports */
	__be32 ndst;
	__be16 nsport;
	__be16 ndport;
	__u32 in_ifindex;        /* the port this direction arrives on */
	__u32 out_ifindex;       /* the port it leaves by */
	__u8 in_mac[6];          /* the ingress port's MAC (frame's dst) */
	__u8 dmac[6];            /* next hop's MAC */
	__u8 smac[6];            /* egress port's MAC */
	__u8 dir;                /* 0 client->server, 1 server->client */
	__u8 flags;
	__u32 slot;              /* index into tcp_states (TCP); the ICMP type
	                          * this direction carries (ICMP) */
	__u64 packets;
	__u64 bytes;             /* L4 payload bytes */
	__u64 last;              /* bpf_ktime_get_ns() of the last packet */
};

/* cbac/inspect/tcp.py TcpTrack, both directions, d = 0 client, 1 server */
/* The TCP window state of one direction d of a session, at index
 * 2 * slot + d of tcp_states: exactly the fields that packets of direction
 * d update (cbac/inspect/tcp.py track(): END[d], MAXWIN[d], MAXEND[1-d]),
 * so neither the other direction (possibly on another CPU) nor Python
 * writing this direction's entry ever overwrites the other's.  No lock:
 * socket filters may not use maps with a bpf_spin_lock; a lost update on a
 * rare same-direction race only narrows the window, and a frame judged
 * outside it goes to Python, which takes the flow back. */
struct tcp_dir {
	__u32 end;               /* highest seq + len d sent */
	__u32 maxend_peer;       /* highest ack + window d advertised: MAXEND[1-d] */
	__u32 maxwin;            /* largest window d advertised, scaled */
	__u32 scale;             /* d's window scale */
};

struct note {                /* the socket filter's verdict for this CPU */
	__u32 ifindex;
	__u32 len;
	__u32 src;
	__u32 dst;
	__u32 ports;
	__u32 seq;
	__u32 forward;
};

struct config {
	__u32 standalone;        /* 1: no socket filter, tc decides alone */
};

#define ST_FORWARDED   0
#define ST_SF_DROPPED  1
#define ST_MISS        2
#define ST_NOT_ELIGIBLE 3    /* flags, fragment, options, TTL */
#define ST_WINDOW      4
#define ST_MTU         5
#define ST_WRONG_PORT  6
#define ST_NO_NOTE     7
#define ST_ERROR       8
#define ST_SF_WINDOW   9     /* the socket filter passed it: outside the window */
#define ST_SF_WRONG_PORT 10
#define ST_MAX         11

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);   /* memory as entries come */
	__uint(max_entries, 65536);             /* set from cbac session-limit */
	__type(key, struct flow_key);
	__type(value, struct flow_val);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);             /* 2 per TCP slot */
	__type(key, __u32);
	__type(value, struct tcp_dir);
} tcp_states SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct note);
} notes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ST_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} config SEC(".maps");

#define H32 0x80000000u
#define MAXACKWINCONST 66000u

static __always_inline void count(__u32 i)
{
	__u64 *c = bpf_map_lookup_elem(&stats, &i);
	if (c)
		*c += 1;
}

/* The headers of one frame as they lie in it (packed: the IP header
 * follows the 14-byte Ethernet header unaligned). */
struct hdrs {
	struct ethhdr eth;
	struct iphdr ip;
	union {
		struct {
			__be16 sport, dport;
			__be32 seq, ack;
			__u8 doff, flags;
			__be16 win;
		} __attribute__((packed)) tcp;
		struct {
			__be16 sport, dport, len, csum;
		} __attribute__((packed)) udp;
		struct {
			__u8 type, code;
			__be16 csum, id, seq;
		} __attribute__((packed)) icmp;
	} l4;
} __attribute__((packed));

/* Load and check the headers; 0 = offload candidate, else a ST_ reason. */
static __always_inline int parse(struct __sk_buff *skb, struct hdrs *h)
{
	if (bpf_skb_load_bytes(skb, 0, h, sizeof(h->eth) + sizeof(h->ip) + 16) < 0)
		return ST_NOT_ELIGIBLE;
	if (h->eth.h_proto != bpf_htons(ETH_P_IP))
		return ST_NOT_ELIGIBLE;
	if (*(__u8 *)&h->ip != 0x45)                  /* version 4, IHL 5 */
		return ST_NOT_ELIGIBLE;
	if (h->ip.frag_off & bpf_htons(0x3FFF))      /* MF or an offset */
		return ST_NOT_ELIGIBLE;
	if (h->ip.ttl <= 1)
		return ST_NOT_ELIGIBLE;
	if (h->ip.protocol == IPPROTO_TCP) {
		__u8 f = h->l4.tcp.flags;
		/* ACK, and none of FIN SYN RST URG */
		if ((f & 0x37) != 0x10)
			return ST_NOT_ELIGIBLE;
		if ((h->l4.tcp.doff >> 4) < 5)
			return ST_NOT_ELIGIBLE;
		return 0;
	}
	if (h->ip.protocol == IPPROTO_UDP)
		return 0;
	if (h->ip.protocol == IPPROTO_ICMP) {
		__u8 t = h->l4.icmp.type;
		/* echo and timestamp queries only; errors go to Python */
		if ((t == 0 || t == 8 || t == 13 || t == 14) &&
		    bpf_ntohs(h->ip.tot_len) >= 28)
			return 0;
	}
	return ST_NOT_ELIGIBLE;
}

/* ICMP: the type this direction may carry (cbac/inspect/icmp.py) */
static __always_inline int icmp_bad(struct hdrs *h, struct flow_val *v)
{
	return h->ip.protocol == IPPROTO_ICMP && h->l4.icmp.type != v->slot;
}

static __always_inline int port_ok(struct __sk_buff *skb, struct hdrs *h,
				   struct flow_val *v, __u32 ifindex)
{
	if (ifindex != v->in_ifindex)
		return 0;
	for (int i = 0; i < 6; i++)
		if (h->eth.h_dest[i] != v->in_mac[i])
			return 0;
	return 1;
}

/* TCP window check of cbac/inspect/tcp.py track() for an ACK segment
 * (no SYN/FIN/RST).  Returns 0 when the segment is within the window. */
static __always_inline int window_bad(struct tcp_dir *me, struct tcp_dir *peer,
				      struct hdrs *h)
{
	__u32 seq = bpf_ntohl(h->l4.tcp.seq);
	__u32 ack = bpf_ntohl(h->l4.tcp.ack);
	__u32 plen = bpf_ntohs(h->ip.tot_len) - 20 - ((h->l4.tcp.doff >> 4) << 2);
	__u32 end = seq + plen;
	__u32 s_end = me->end;
	__u32 r_end = peer->end;
	__u32 s_maxend = peer->maxend_peer;
	__u32 r_maxwin = peer->maxwin;
	__u32 s_maxwin = me->maxwin;

	if ((s_maxend - seq) >= H32)                          /* (I) */
		return 1;
	if ((end - (s_end - r_maxwin)) >= H32)                /* (II) */
		return 1;
	if ((r_end - ack) >= H32)                             /* (III) */
		return 1;
	__u32 maxack = s_maxwin > MAXACKWINCONST ? s_maxwin : MAXACKWINCONST;
	if ((ack - (r_end - maxack)) >= H32)                  /* (IV) */
		return 1;
	return 0;
}

static __always_inline void window_update(struct tcp_dir *me, struct hdrs *h)
{
	__u32 seq = bpf_ntohl(h->l4.tcp.seq);
	__u32 ack = bpf_ntohl(h->l4.tcp.ack);
	__u32 plen = bpf_ntohs(h->ip.tot_len) - 20 - ((h->l4.tcp.doff >> 4) << 2);
	__u32 end = seq + plen;
	__u32 win = bpf_ntohs(h->l4.tcp.win);
	__u32 sc = me->scale;
	if (sc > 0 && sc <= 14)
		win <<= sc;
	__u32 right = ack + (win ? win : 1);
	if (me->maxwin < win)
		me->maxwin = win;
	if ((end - me->end) < H32)
		me->end = end;
	if ((right - me->maxend_peer) < H32)
		me->maxend_peer = right;
}

/* the two directions' entries of a flow: 0 or -1 */
static __always_inline int tcp_dirs(struct flow_val *v, struct tcp_dir **me, struct tcp_dir **peer)
{
	__u32 d = v->dir & 1;
	__u32 i = v->slot * 2 + d, j = v->slot * 2 + (d ^ 1);
	*me = bpf_map_lookup_elem(&tcp_states, &i);
	*peer = bpf_map_lookup_elem(&tcp_states, &j);
	return (*me && *peer) ? 0 : -1;
}

static __always_inline int tcp_check(struct hdrs *h, struct flow_val *v)
{
	struct tcp_dir *me, *peer;
	if (tcp_dirs(v, &me, &peer))
		return -1;
	return window_bad(me, peer, h);
}

/* forced: the socket filter already let the frame go (the socket dropped
 * its copy): update even when a concurrent update moved the window since. */
static __always_inline int tcp_check_update(struct hdrs *h, struct flow_val *v, int forced)
{
	struct tcp_dir *me, *peer;
	if (tcp_dirs(v, &me, &peer))
		return -1;
	int bad = window_bad(me, peer, h);
	if (!bad || forced)
		window_update(me, h);
	return bad;
}

static __always_inline void make_key(struct hdrs *h, struct flow_key *k)
{
	k->src = h->ip.saddr;
	k->dst = h->ip.daddr;
	if (h->ip.protocol == IPPROTO_ICMP) {
		k->sport = h->l4.icmp.id;
		k->dport = 0;
	} else {
		k->sport = h->l4.tcp.sport;
		k->dport = h->l4.tcp.dport;
	}
	k->proto = h->ip.protocol;
}

/* what the note identifies a frame by besides addresses, length and ports:
 * the TCP sequence number, the UDP checksum, ICMP identifier + sequence */
static __always_inline __u32 note_seq(struct hdrs *h)
{
	return h->ip.protocol == IPPROTO_UDP ? h->l4.udp.csum : h->l4.tcp.seq;
}

SEC("socket")
int cbac_sf(struct __sk_buff *skb)
{
	struct hdrs h = {};
	struct flow_key k = {};
	__u32 zero = 0;
	struct note *n = bpf_map_lookup_elem(&notes, &zero);

	if (n)
		n->forward = 0;
	if (parse(skb, &h) != 0)
		return skb->len;
	make_key(&h, &k);
	struct flow_val *v = bpf_map_lookup_elem(&flows, &k);
	if (!v)
		return skb->len;
	if (!port_ok(skb, &h, v, skb->ifindex)) {
		count(ST_SF_WRONG_PORT);
		return skb->len;
	}
	if (h.ip.protocol == IPPROTO_TCP && tcp_check(&h, v) != 0) {
		count(ST_SF_WINDOW);
		return skb->len;
	}
	if (icmp_bad(&h, v)) {
		count(ST_NOT_ELIGIBLE);
		return skb->len;
	}
	/* the MTU check is the tc program's (bpf_check_mtu is tc/XDP only):
	 * Python keeps the egress MTU equal to what the entry was made for,
	 * and an oversize frame the tc program refuses is dropped there */
	if (!n)
		return skb->len;
	n->ifindex = skb->ifindex;
	n->len = skb->len;
	n->src = h.ip.saddr;
	n->dst = h.ip.daddr;
	n->ports = (((__u32)k.sport << 16) | k.dport);
	n->seq = note_seq(&h);
	n->forward = 1;
	count(ST_SF_DROPPED);
	return 0;
}

SEC("tc")
int cbac_tc(struct __sk_buff *skb)
{
	struct hdrs h = {};
	struct flow_key k = {};
	__u32 zero = 0;
	int r;
	int by_note = 0;

	struct note *n = bpf_map_lookup_elem(&notes, &zero);
	if (n && n->forward) {
		n->forward = 0;
		by_note = 1;
	}
	r = parse(skb, &h);
	if (r) {
		count(r);
		return by_note ? TC_ACT_SHOT : TC_ACT_OK;
	}
	make_key(&h, &k);
	struct flow_val *v = bpf_map_lookup_elem(&flows, &k);
	if (!v) {
		count(ST_MISS);
		return by_note ? TC_ACT_SHOT : TC_ACT_OK;
	}
	if (by_note) {
		/* follow the socket filter only for the very frame it judged */
		if (!n || n->ifindex != skb->ingress_ifindex || n->len != skb->len ||
		    n->src != h.ip.saddr || n->dst != h.ip.daddr ||
		    n->ports != (((__u32)k.sport << 16) | k.dport) ||
		    n->seq != note_seq(&h)) {
			count(ST_NO_NOTE);
			return TC_ACT_OK;
		}
	} else {
		struct config *cfg = bpf_map_lookup_elem(&config, &zero);
		if (!cfg || !cfg->standalone) {
			count(ST_NO_NOTE);
			return TC_ACT_OK;
		}
		if (!port_ok(skb, &h, v, skb->ingress_ifindex)) {
			count(ST_WRONG_PORT);
			return TC_ACT_OK;
		}
		if (icmp_bad(&h, v)) {
			count(ST_NOT_ELIGIBLE);
			return TC_ACT_OK;
		}
	}
	if (h.ip.protocol == IPPROTO_TCP) {
		/* with a note the socket filter found it in the window; apply the
		 * update (a concurrent update on another CPU may have moved the
		 * window since: the frame is forwarded all the same, as Python
		 * no longer has it) */
		if (tcp_check_update(&h, v, by_note) != 0 && !by_note) {
			count(ST_WINDOW);
			return TC_ACT_OK;
		}
	}
	__u32 mtu_len = 0;
	if (bpf_check_mtu(skb, v->out_ifindex, &mtu_len, 0, 0) != 0) {
		count(ST_MTU);
		/* Python must answer (ICMP frag needed / fragment): it lost its
		 * copy when the socket filter dropped it, so drop; the sender
		 * retransmits and the entry is withdrawn by Python when the
		 * egress MTU changes */
		return by_note ? TC_ACT_SHOT : TC_ACT_OK;
	}

	__u32 plen;
	int l4csum;
	__u64 l4flags;
	if (h.ip.protocol == IPPROTO_TCP) {
		plen = bpf_ntohs(h.ip.tot_len) - 20 - ((h.l4.tcp.doff >> 4) << 2);
		l4csum = 14 + 20 + 16;
		l4flags = 0;
	} else if (h.ip.protocol == IPPROTO_UDP) {
		plen = bpf_ntohs(h.l4.udp.len) - 8;
		l4csum = 14 + 20 + 6;
		l4flags = BPF_F_MARK_MANGLED_0;   /* a zero UDP checksum stays zero */
	} else {
		plen = bpf_ntohs(h.ip.tot_len) - 28;
		l4csum = 14 + 20 + 2;
		l4flags = 0;
	}
	if ((v->flags & F_REWRITE) && h.ip.protocol == IPPROTO_ICMP) {
		/* no pseudo-header in the ICMP checksum: the addresses enter the
		 * IP header checksum only, the identifier the ICMP checksum */
		__be32 ns = v->nsrc, nd = v->ndst;
		__be16 nid = v->nsport;
		if (ns != h.ip.saddr) {
			if (bpf_l3_csum_replace(skb, 24, h.ip.saddr, ns, 4) ||
			    bpf_skb_store_bytes(skb, 26, &ns, 4, 0))
				goto error;
		}
		if (nd != h.ip.daddr) {
			if (bpf_l3_csum_replace(skb, 24, h.ip.daddr, nd, 4) ||
			    bpf_skb_store_bytes(skb, 30, &nd, 4, 0))
				goto error;
		}
		if (nid != h.l4.icmp.id) {
			if (bpf_l4_csum_replace(skb, l4csum, h.l4.icmp.id, nid, 2) ||
			    bpf_skb_store_bytes(skb, 38, &nid, 2, 0))
				goto error;
		}
	} else if (v->flags & F_REWRITE) {
		__be32 ns = v->nsrc, nd = v->ndst;
		__be16 nsp = v->nsport, ndp = v->ndport;
		if (ns != h.ip.saddr) {
			if (bpf_l4_csum_replace(skb, l4csum, h.ip.saddr, ns, BPF_F_PSEUDO_HDR | l4flags | 4) ||
			    bpf_l3_csum_replace(skb, 24, h.ip.saddr, ns, 4) ||
			    bpf_skb_store_bytes(skb, 26, &ns, 4, 0))
				goto error;
		}
		if (nd != h.ip.daddr) {
			if (bpf_l4_csum_replace(skb, l4csum, h.ip.daddr, nd, BPF_F_PSEUDO_HDR | l4flags | 4) ||
			    bpf_l3_csum_replace(skb, 24, h.ip.daddr, nd, 4) ||
			    bpf_skb_store_bytes(skb, 30, &nd, 4, 0))
				goto error;
		}
		if (nsp != h.l4.tcp.sport) {
			if (bpf_l4_csum_replace(skb, l4csum, h.l4.tcp.sport, nsp, l4flags | 2) ||
			    bpf_skb_store_bytes(skb, 34, &nsp, 2, 0))
				goto error;
		}
		if (ndp != h.l4.tcp.dport) {
			if (bpf_l4_csum_replace(skb, l4csum, h.l4.tcp.dport, ndp, l4flags | 2) ||
			    bpf_skb_store_bytes(skb, 36, &ndp, 2, 0))
				goto error;
		}
	}
	/* TTL - 1: the 16-bit word TTL|protocol at offset 22 */
	{
		__be16 oldw = bpf_htons(((__u16)h.ip.ttl << 8) | h.ip.protocol);
		__be16 neww = bpf_htons(((__u16)(h.ip.ttl - 1) << 8) | h.ip.protocol);
		if (bpf_l3_csum_replace(skb, 24, oldw, neww, 2) ||
		    bpf_skb_store_bytes(skb, 22, &neww, 2, 0))
			goto error;
	}
	if (bpf_skb_store_bytes(skb, 0, v->dmac, 6, 0) ||
	    bpf_skb_store_bytes(skb, 6, v->smac, 6, 0))
		goto error;
	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, plen);
	v->last = bpf_ktime_get_ns();
	count(ST_FORWARDED);
	return bpf_redirect(v->out_ifindex, 0);
error:
	count(ST_ERROR);
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "GPL";
