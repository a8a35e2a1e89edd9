package delivery

import (
	"encoding/binary"
	"net/netip"
)

// The dial-time guard. Webhook URLs come from outside, so a delivery (and a CRC check) must not be
// a way to reach the server's own network: every address a dial is about to connect to is judged
// here, after name resolution (see Client.control).
//
// Two rules make it hard to get around:
//   - an IPv6 address that carries an IPv4 address (mapped, compatible, SIIT, NAT64, 6to4, Teredo,
//     ISATAP) is judged by that IPv4 address as well as by itself, because a translator or tunnel
//     on the path delivers the packets to the IPv4 host;
//   - every range of IANA's special-purpose registries that is not globally reachable is refused
//     (https://www.iana.org/assignments/iana-ipv4-special-registry,
//     https://www.iana.org/assignments/iana-ipv6-special-registry), not only the well-known
//     private ones.

// class is how the guard treats an address range.
type class int

const (
	public        class = iota
	unlessAllowed       // refused unless Options.AllowPrivate
	always              // refused whatever Options.AllowPrivate says
)

// rangeRule is one special-purpose range.
type rangeRule struct {
	prefix netip.Prefix
	class  class
	name   string
}

func rule(prefix string, c class, name string) rangeRule {
	return rangeRule{netip.MustParsePrefix(prefix), c, name}
}

var (
	// metadata are cloud instance-metadata endpoints: always refused.
	metadata = []netip.Addr{
		netip.MustParseAddr("169.254.169.254"), // AWS, GCP, Azure, OpenStack, …
		netip.MustParseAddr("fd00:ec2::254"),   // AWS IPv6
		netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
	}

	// rules4 are IPv4's special-purpose ranges that are not globally reachable, plus multicast and
	// the reserved class E. The globally reachable entries of the registry (192.0.0.9/32,
	// 192.0.0.10/32, 192.31.196.0/24 AS112, 192.52.193.0/24 AMT, 192.175.48.0/24 AS112) pass.
	rules4 = []rangeRule{
		rule("169.254.0.0/16", always, "link-local address"),
		rule("224.0.0.0/24", always, "link-local multicast address"),
		rule("0.0.0.0/8", unlessAllowed, `"this network" address`),
		rule("10.0.0.0/8", unlessAllowed, "private address"),
		rule("100.64.0.0/10", unlessAllowed, "shared (carrier-grade NAT) address"),
		rule("127.0.0.0/8", unlessAllowed, "loopback address"),
		rule("172.16.0.0/12", unlessAllowed, "private address"),
		rule("192.0.0.0/24", unlessAllowed, "IETF protocol assignment"),
		rule("192.0.2.0/24", unlessAllowed, "documentation address (TEST-NET-1)"),
		rule("192.88.99.0/24", unlessAllowed, "deprecated 6to4 relay anycast address"),
		rule("192.168.0.0/16", unlessAllowed, "private address"),
		rule("198.18.0.0/15", unlessAllowed, "benchmarking address"),
		rule("198.51.100.0/24", unlessAllowed, "documentation address (TEST-NET-2)"),
		rule("203.0.113.0/24", unlessAllowed, "documentation address (TEST-NET-3)"),
		rule("224.0.0.0/4", unlessAllowed, "multicast address"),
		rule("240.0.0.0/4", unlessAllowed, "reserved address"), // includes 255.255.255.255, broadcast
	}

	// rules6 are IPv6's. The ranges that embed an IPv4 address are listed too: the embedded
	// address is judged separately (embeddedIPv4), and the range itself is not refused.
	rules6 = []rangeRule{
		rule("fe80::/10", always, "link-local address"),
		rule("ff02::/16", always, "link-local multicast address"),
		rule("::1/128", unlessAllowed, "loopback address"),
		rule("::/128", unlessAllowed, "unspecified address"),
		rule("64:ff9b:1::/48", unlessAllowed, "local-use IPv4/IPv6 translation address"),
		rule("100::/64", unlessAllowed, "discard-only address"),
		rule("100:0:0:1::/64", unlessAllowed, "dummy IPv6 prefix"),
		rule("2001:2::/48", unlessAllowed, "benchmarking address"),
		rule("2001:10::/28", unlessAllowed, "deprecated ORCHID address"),
		rule("2001:db8::/32", unlessAllowed, "documentation address"),
		rule("3fff::/20", unlessAllowed, "documentation address"),
		rule("5f00::/16", unlessAllowed, "segment routing (SRv6) SID"),
		rule("fc00::/7", unlessAllowed, "unique local address"),
		rule("fec0::/10", unlessAllowed, "deprecated site-local address"),
		rule("ff00::/8", unlessAllowed, "multicast address"),
	}

	ipv4Compatible = netip.MustParsePrefix("::/96")           // ::a.b.c.d, deprecated (RFC 4291)
	siit           = netip.MustParsePrefix("::ffff:0:0:0/96") // ::ffff:0:a.b.c.d (RFC 2765)
	nat64          = netip.MustParsePrefix("64:ff9b::/96")    // well-known NAT64 prefix (RFC 6052)
	nat64Local     = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour      = netip.MustParsePrefix("2002::/16") // 2002:AABB:CCDD::/48 (RFC 3056)
	teredo         = netip.MustParsePrefix("2001::/32") // server IPv4, then ^client IPv4 (RFC 4380)
)

// CheckDestination says whether a delivery may connect to addr. It returns nil or a *DeniedError:
//
//   - always refused: link-local (169.254.0.0/16, fe80::/10, link-local multicast) and cloud
//     metadata addresses (169.254.169.254, fd00:ec2::254, 100.100.100.200);
//   - refused unless allowPrivate: every other range of IANA's special-purpose registries that is
//     not globally reachable (private, CGNAT, loopback, unspecified, "this network", IETF protocol
//     assignments, documentation, benchmarking, discard-only, ORCHID, SRv6, unique and site local,
//     the 6to4 relay anycast), multicast, and the reserved 240.0.0.0/4 with broadcast.
//
// An IPv6 address that embeds an IPv4 address is refused when either is: IPv4-mapped
// (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), SIIT (::ffff:0:a.b.c.d), NAT64 (64:ff9b::/96 and
// the low 32 bits of 64:ff9b:1::/48), 6to4 (2002::/16), Teredo (2001::/32: server and client) and
// ISATAP interface identifiers (…:0:5efe:a.b.c.d, …:200:5efe:a.b.c.d).
func CheckDestination(addr netip.Addr, allowPrivate bool) error {
	a := addr.WithZone("")
	if !a.IsValid() {
		return &DeniedError{Address: addr.String(), Reason: "invalid address"}
	}
	worst, reason := judge(a)
	for _, v4 := range embeddedIPv4(a) {
		if c, r := judge(v4); c > worst {
			worst, reason = c, r+" "+v4.String()+" embedded in "+a.String()
		}
	}
	switch {
	case worst == always:
		return &DeniedError{Address: addr.String(), Reason: reason}
	case worst == unlessAllowed && !allowPrivate:
		return &DeniedError{Address: addr.String(), Reason: reason + " (AllowPrivate is off)"}
	}
	return nil
}

// judge classifies one address by itself, without looking inside it.
func judge(a netip.Addr) (class, string) {
	for _, m := range metadata {
		if a == m {
			return always, "cloud metadata address"
		}
	}
	rules := rules6
	if a.Is4() {
		rules = rules4
	}
	worst, reason := public, ""
	for _, r := range rules {
		if r.class > worst && r.prefix.Contains(a) {
			worst, reason = r.class, r.name+" in "+r.prefix.String()
		}
	}
	return worst, reason
}

// embeddedIPv4 returns the IPv4 addresses an IPv6 address carries, by the forms CheckDestination
// lists; none for an IPv4 address.
func embeddedIPv4(a netip.Addr) []netip.Addr {
	if a.Is4() {
		return nil
	}
	b := a.As16()
	low := netip.AddrFrom4([4]byte(b[12:16]))
	var out []netip.Addr
	switch {
	case a.Is4In6(), siit.Contains(a), nat64.Contains(a), nat64Local.Contains(a):
		out = append(out, low)
	case ipv4Compatible.Contains(a) && a != netip.IPv6Unspecified() && a != netip.IPv6Loopback():
		out = append(out, low)
	case sixToFour.Contains(a):
		out = append(out, netip.AddrFrom4([4]byte(b[2:6])))
	case teredo.Contains(a):
		client := binary.BigEndian.Uint32(b[12:16]) ^ 0xffffffff
		var c [4]byte
		binary.BigEndian.PutUint32(c[:], client)
		out = append(out, netip.AddrFrom4([4]byte(b[4:8])), netip.AddrFrom4(c))
	}
	// ISATAP: the interface identifier is 0000:5efe or 0200:5efe then the IPv4 address, under any
	// prefix (RFC 5214).
	if (b[8] == 0x00 || b[8] == 0x02) && b[9] == 0x00 && b[10] == 0x5e && b[11] == 0xfe {
		out = append(out, low)
	}
	return out
}
