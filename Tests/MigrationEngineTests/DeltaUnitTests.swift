import Foundation
import IMAPClient
@testable import MigrationEngine
import Testing

@Suite("UID map of copies")
struct UIDMapTests {
    @Test func batchesAppendedInOrderBecomeOneRunEach() throws {
        var map = UIDMap()
        map.insert((1...500).map { (UInt32($0), UInt32($0 + 1000)) })
        map.insert((501...700).map { (UInt32($0), UInt32($0 + 1000)) })
        #expect(map.runs == [UIDMap.Run(source: 1, destination: 1001, count: 700)])
        // A skipped duplicate leaves a gap in the source run; a failed append one in the destination's.
        map.insert([(702, 1701), (703, 1703)])
        #expect(map.runs.count == 3)
        #expect(map.destination(of: 700) == 1700)
        #expect(map.destination(of: 701) == nil)
        #expect(map.destination(of: 703) == 1703)
        #expect(map.count == 702)
        #expect(map.sources.description == "1:700,702:703")
        #expect(map.destinations.description == "1001:1701,1703")
    }

    @Test func pairsOutOfOrderAndRemovalsKeepItExact() {
        var map = UIDMap(pairs: [(10, 5), (3, 1), (4, 2), (11, 6)])
        #expect(map.runs == [.init(source: 3, destination: 1, count: 2), .init(source: 10, destination: 5, count: 2)])
        map.insert([(5, 3)])
        #expect(map.runs.first == .init(source: 3, destination: 1, count: 3))
        map.remove(sources: [4])
        #expect(map.pairs.map(\.source) == [3, 5, 10, 11])
        #expect(map.destination(of: 4) == nil)
        #expect(map.destination(of: 5) == 3)
    }

    @Test func storedAsTriplesAndOldCheckpointsStillLoad() throws {
        var checkpoint = FolderCheckpoint(sourceUIDValidity: 7, lastSourceUID: 9, copied: 9)
        checkpoint.copiedMap = UIDMap(pairs: (1...9).map { (UInt32($0), UInt32($0 + 20)) })
        let data = try JSONEncoder().encode(checkpoint)
        #expect(String(decoding: data, as: UTF8.self).contains("\"copiedMap\":[[1,21,9]]"))
        #expect(try JSONDecoder().decode(FolderCheckpoint.self, from: data) == checkpoint)

        let old = #"{"sourceUIDValidity":7,"lastSourceUID":9,"copied":9,"skipped":0,"failed":0,"bytes":10}"#
        let loaded = try JSONDecoder().decode(FolderCheckpoint.self, from: Data(old.utf8))
        #expect(loaded.copiedMap == nil)
        #expect(loaded.copied == 9)
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(UIDMap.self, from: Data("[[5,1,2],[4,9,1]]".utf8))
        }
    }
}

@Suite("Flag updates grouped into UID STOREs")
struct FlagUpdateTests {
    @Test func copiesNeedingTheSameChangeShareOneStore() {
        let current: [UInt32: [String]] = [
            1: [], 2: [], 3: [], 7: ["\\Seen"], 8: ["\\Seen", "$Work"], 9: ["\\seen", "\\Recent"],
        ]
        let desired: [UInt32: [String]] = [
            1: ["\\Seen", "\\Flagged"], 2: ["\\Flagged", "\\Seen"], 3: ["\\Seen", "\\Flagged"],
            7: [], 8: ["$Work"], 9: ["\\Seen"],
        ]
        let plan = FlagUpdates.plan(desired: desired, current: current)
        #expect(plan.count == 2)
        #expect(plan[0].0 == .add(["\\Flagged", "\\Seen"]))
        #expect(plan[0].1.description == "1:3")
        #expect(plan[1].0 == .remove(["\\Seen"]))
        #expect(plan[1].1.description == "7:8")
    }

    @Test func addAndRemoveTogetherIsOneReplaceThatKeepsDeleted() {
        #expect(
            FlagUpdates.update(from: ["\\Seen", "\\Deleted", "\\Recent", "$Old"], to: ["$New", "\\Seen"])
                == .replace(["$New", "\\Deleted", "\\Seen"]))
        #expect(FlagUpdates.update(from: ["$work"], to: ["$Work"]) == nil, "keywords compare without case")
        #expect(FlagUpdates.update(from: [], to: ["\\Deleted", "\\Recent"]) == nil, "only managed flags count")
    }

    @Test func longSetsAreCutIntoBoundedChunks() {
        let chunks = FolderCopier.chunks(of: UIDSet([1...7, 10...12, 20...20]), size: 4)
        #expect(chunks.map(\.description) == ["1:4", "5:7,10", "11:12,20"])
    }
}

@Suite("Flag digests of a source without CONDSTORE")
struct FlagDigestTests {
    private func digest(_ uids: [UInt32], _ flags: [UInt32: [String]]) -> UInt64 {
        FlagDigests.digest(uids[...]) { flags[$0] }
    }

    @Test func aDigestMovesWithAnyFlagOrUIDAndNotWithFlagOrder() {
        let uids: [UInt32] = [1, 2, 3]
        let flags: [UInt32: [String]] = [1: ["\\Seen", "$Work"], 2: [], 3: ["\\Flagged"]]
        let digest = digest(uids, flags)
        #expect(self.digest(uids, [1: ["$Work", "\\Seen"], 2: [], 3: ["\\Flagged"]]) == digest)
        #expect(self.digest(uids, [1: ["\\Seen"], 2: [], 3: ["\\Flagged"]]) != digest)
        #expect(self.digest(uids, [1: ["\\Seen", "$Work"], 2: [], 3: []]) != digest)
        // Gone from the source is not the same as present without flags.
        #expect(self.digest(uids, [1: ["\\Seen", "$Work"], 3: ["\\Flagged"]]) != digest)
        #expect(self.digest([1, 2, 4], flags.merging([4: ["\\Flagged"]]) { a, _ in a }) != digest)
        // Flag names do not run into each other: ["ab"] is not ["a", "b"].
        #expect(self.digest([1], [1: ["ab"]]) != self.digest([1], [1: ["a", "b"]]))
    }

    /// Digests are kept in checkpoints from pass to pass, so their value is fixed: FNV-1a 64 over
    /// each UID (little-endian), its flags sorted (each ended by 0) and 1, or 0xff when gone (this
    /// value computed apart from the code, in Python).
    @Test func aDigestsValueIsTheStoredOne() {
        let flags: [UInt32: [String]] = [1: ["\\Seen", "$Work"], 2: ["a", "c", "b"]]
        #expect(digest([1, 2, 3], flags) == 0x7aa8_16f6_9b6e_5896)
    }

    /// Answers are walked in UID order beside the copies; a server that answers out of order, or
    /// twice for one message, gives the same walk, with its last answer.
    @Test func answersOutOfOrderAreSortedAndTheLastOneCounts() {
        let answers = [
            MessageFlags(uid: 5, flags: ["\\Seen"]), MessageFlags(uid: 2, flags: []),
            MessageFlags(uid: 9, flags: ["$A"]), MessageFlags(uid: 5, flags: ["\\Flagged"]),
        ]
        #expect(
            FolderCopier.inUIDOrder(answers) == [
                MessageFlags(uid: 2, flags: []), MessageFlags(uid: 5, flags: ["\\Flagged"]),
                MessageFlags(uid: 9, flags: ["$A"]),
            ])
        let ordered = [MessageFlags(uid: 1, flags: []), MessageFlags(uid: 3, flags: ["x"])]
        #expect(FolderCopier.inUIDOrder(ordered) == ordered)
    }

    /// 250 copies are three runs of 100, 100 and 50: a change in the middle one moves only its
    /// digest; a copy added at the end moves only the last; digests of another run length match none.
    @Test func onlyTheRunThatChangedIsReadAgain() {
        let uids = (1...250).map { UInt32($0) }
        var flags = Dictionary(uniqueKeysWithValues: uids.map { ($0, $0 % 3 == 0 ? ["\\Seen"] : []) })
        let before = FlagDigests(uids) { flags[$0] }
        #expect(FlagDigests.runs(of: uids, segment: before.segment).map(\.count) == [100, 100, 50])
        flags[150] = ["\\Flagged"]
        let after = FlagDigests(uids) { flags[$0] }
        #expect((0..<3).map { after.matches(before, at: $0) } == [true, false, true])
        let grown = FlagDigests(uids + [251]) { flags[$0] ?? [] }
        #expect((0..<3).map { grown.matches(after, at: $0) } == [true, true, false])
        let otherRuns = FlagDigests(uids, segment: 50) { flags[$0] }
        #expect(!otherRuns.matches(after, at: 0))
        #expect(!after.matches(nil, at: 0))
    }

    @Test func storedCompactlyInTheCheckpointAndReadBack() throws {
        var checkpoint = FolderCheckpoint(sourceUIDValidity: 7, lastSourceUID: 9, copied: 9)
        checkpoint.flagDigests = FlagDigests(segment: 100, values: [0, 1, .max, 0x0123_4567_89ab_cdef])
        let data = try JSONEncoder().encode(checkpoint)
        #expect(String(decoding: data, as: UTF8.self).contains("\"values\":\""), "base64, not an array of numbers")
        #expect(try JSONDecoder().decode(FolderCheckpoint.self, from: data) == checkpoint)
        // A checkpoint from before digests existed loads without them.
        let older = try JSONDecoder().decode(
            FolderCheckpoint.self,
            from: Data(#"{"sourceUIDValidity":7,"lastSourceUID":9,"copied":9,"skipped":0,"failed":0,"bytes":0}"#.utf8))
        #expect(older.flagDigests == nil)
    }
}
