import IMAPClient
import NIOCore
import Testing

@Suite("Private-host guard (AddressPolicy)")
struct AddressPolicyTests {
    @Test(arguments: [
        "127.0.0.1", "127.255.0.9", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254",
        "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "198.18.0.1",
        "::1", "::", "fe80::1", "fd00::1", "fc00::2", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
        "64:ff9b::a9fe:a9fe",
    ])
    func refusesPrivateLoopbackLinkLocalAndMetadataAddresses(_ address: String) throws {
        let socketAddress = try SocketAddress(ipAddress: address, port: 993)
        #expect(!AddressPolicy.isPublic(socketAddress))
        #expect(!AddressPolicy.publicOnly(socketAddress))
        #expect(AddressPolicy.filter(allowPrivateHosts: true)(socketAddress))
    }

    @Test(arguments: [
        "8.8.8.8", "142.250.185.109", "172.32.0.1", "100.128.0.1", "2a00:1450:4001:80b::200e",
        "::ffff:8.8.8.8",
    ])
    func allowsPublicAddresses(_ address: String) throws {
        let socketAddress = try SocketAddress(ipAddress: address, port: 993)
        #expect(AddressPolicy.isPublic(socketAddress))
        #expect(AddressPolicy.filter(allowPrivateHosts: false)(socketAddress))
    }
}
