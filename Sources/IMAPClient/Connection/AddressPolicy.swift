import NIOCore

/// Which resolved addresses a hosted service may connect to on a user's behalf.
///
/// A user-supplied host name must not become a way into the operator's network: after DNS
/// resolution, loopback, private (RFC 1918, RFC 4193), shared (RFC 6598), link-local (which holds
/// the cloud metadata address 169.254.169.254), multicast and unspecified addresses are refused.
public enum AddressPolicy {
    /// Allows every address (the CLI, and services with `MAILPORTER_ALLOW_PRIVATE_HOSTS=true`).
    public static let allowAll: @Sendable (SocketAddress) -> Bool = { _ in true }

    /// Allows only globally routable unicast addresses.
    public static let publicOnly: @Sendable (SocketAddress) -> Bool = { isPublic($0) }

    public static func filter(allowPrivateHosts: Bool) -> @Sendable (SocketAddress) -> Bool {
        allowPrivateHosts ? allowAll : publicOnly
    }

    public static func isPublic(_ address: SocketAddress) -> Bool {
        switch address {
        case .v4(let v4):
            return isPublicIPv4(UInt32(bigEndian: v4.address.sin_addr.s_addr))
        case .v6(let v6):
            let bytes = withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
            return isPublicIPv6(bytes)
        case .unixDomainSocket:
            return false
        }
    }

    /// `address` in host byte order.
    static func isPublicIPv4(_ address: UInt32) -> Bool {
        func inNetwork(_ network: UInt32, _ prefix: UInt32) -> Bool {
            let mask: UInt32 = prefix == 0 ? 0 : ~UInt32(0) << (32 - prefix)
            return address & mask == network & mask
        }
        let blocked: [(UInt32, UInt32)] = [
            (0x0000_0000, 8),  // 0.0.0.0/8 "this network"
            (0x0A00_0000, 8),  // 10.0.0.0/8
            (0x6440_0000, 10),  // 100.64.0.0/10 carrier-grade NAT
            (0x7F00_0000, 8),  // 127.0.0.0/8 loopback
            (0xA9FE_0000, 16),  // 169.254.0.0/16 link-local, cloud metadata
            (0xAC10_0000, 12),  // 172.16.0.0/12
            (0xC000_0000, 24),  // 192.0.0.0/24 protocol assignments
            (0xC0A8_0000, 16),  // 192.168.0.0/16
            (0xC612_0000, 15),  // 198.18.0.0/15 benchmarking
            (0xE000_0000, 4),  // 224.0.0.0/4 multicast
            (0xF000_0000, 4),  // 240.0.0.0/4 reserved, broadcast
        ]
        return !blocked.contains { inNetwork($0.0, $0.1) }
    }

    static func isPublicIPv6(_ bytes: [UInt8]) -> Bool {
        guard bytes.count == 16 else { return false }
        // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible/NAT64 forms carry an IPv4 address that decides.
        let embedded = UInt32(bytes[12]) << 24 | UInt32(bytes[13]) << 16 | UInt32(bytes[14]) << 8 | UInt32(bytes[15])
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF {
            return isPublicIPv4(embedded)
        }
        if bytes[0..<12].allSatisfy({ $0 == 0 }) {
            return false  // :: and ::1, and the deprecated IPv4-compatible form
        }
        if bytes[0] == 0x00 && bytes[1] == 0x64 && bytes[2] == 0xFF && bytes[3] == 0x9B {
            return isPublicIPv4(embedded)  // 64:ff9b::/96 NAT64
        }
        if bytes[0] & 0xFE == 0xFC { return false }  // fc00::/7 unique local
        if bytes[0] == 0xFE && bytes[1] & 0xC0 == 0x80 { return false }  // fe80::/10 link-local
        if bytes[0] == 0xFE && bytes[1] & 0xC0 == 0xC0 { return false }  // fec0::/10 site-local
        if bytes[0] == 0xFF { return false }  // multicast
        return true
    }
}
