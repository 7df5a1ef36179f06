import Store
import Testing

@Suite("Storage pools")
struct StoragePoolsTests {
    @Test func configuredPoolsOverrideThePlanDefaultsAndTheRestStay() throws {
        let pools = try StoragePools(parsing: "starter=500MB, pro = 2GiB,agency=123")
        #expect(pools.bytes(for: .starter) == 500_000_000)
        #expect(pools.bytes(for: .pro) == 2 << 30)
        #expect(pools.bytes(for: .agency) == 123)
        #expect(pools.bytes(for: .nano) == Plan.nano.storagePoolBytes)
        #expect(try StoragePools(parsing: "").bytes(for: .pro) == Plan.pro.storagePoolBytes)
    }

    @Test(arguments: ["gold=1GB", "pro", "pro=", "pro=-5GB", "pro=0", "pro=1.5GB", "pro=10XB", "pro=99999999999TB"])
    func aBadEntryIsRefusedWithoutEchoingIt(_ text: String) {
        #expect(throws: StoragePools.ParseFailure.self) { try StoragePools(parsing: text) }
    }

    @Test func theThresholdIsNinetyPercentOfThePool() {
        let figures = StorageFigures(poolBytes: 1000, usedBytes: 899, measured: true)
        #expect(!figures.isAtPauseThreshold)
        #expect(StorageFigures(poolBytes: 1000, usedBytes: 900, measured: true).isAtPauseThreshold)
        #expect(figures.freeBytes == 101)
    }
}
