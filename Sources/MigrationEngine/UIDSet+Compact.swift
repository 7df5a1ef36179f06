import IMAPClient

extension UIDSet {
    /// The shortest set for these UIDs: runs become ranges.
    public static func compact(_ uids: [UInt32]) -> UIDSet {
        var ranges: [ClosedRange<UInt32>] = []
        for uid in uids.sorted() {
            if let last = ranges.last, last.upperBound &+ 1 == uid {
                ranges[ranges.count - 1] = last.lowerBound...uid
            } else if ranges.last?.contains(uid) != true {
                ranges.append(uid...uid)
            }
        }
        return UIDSet(ranges)
    }
}
