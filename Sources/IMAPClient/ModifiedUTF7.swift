/// Modified UTF-7 for mailbox names (RFC 3501 §5.1.3).
///
/// Decoding is strict so that `encode(decode(name)) == name` for every name it accepts: it rejects
/// bytes outside printable ASCII, unterminated or empty shifts, bad base64, non-zero padding bits,
/// broken surrogates, printable ASCII hidden in a shift, and two shifts in a row.
public enum ModifiedUTF7 {
    public enum DecodingError: Error, Equatable, Sendable {
        case invalidByte(UInt8, offset: Int)
        case unterminatedShift(offset: Int)
        case invalidBase64(offset: Int)
        case invalidUTF16(offset: Int)
        case nonCanonical(offset: Int)
    }

    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,".utf8)
    private static let decodeTable: [Int8] = {
        var table = [Int8](repeating: -1, count: 128)
        for (index, byte) in alphabet.enumerated() { table[Int(byte)] = Int8(index) }
        return table
    }()

    public static func encode(_ name: String) -> String {
        var output: [UInt8] = []
        output.reserveCapacity(name.utf8.count)
        var shifted: [UInt16] = []

        func flush() {
            guard !shifted.isEmpty else { return }
            output.append(UInt8(ascii: "&"))
            var bytes: [UInt8] = []
            for unit in shifted {
                bytes.append(UInt8(unit >> 8))
                bytes.append(UInt8(unit & 0xFF))
            }
            var index = 0
            while index < bytes.count {
                let remaining = bytes.count - index
                let b0 = bytes[index]
                let b1 = remaining > 1 ? bytes[index + 1] : 0
                let b2 = remaining > 2 ? bytes[index + 2] : 0
                output.append(alphabet[Int(b0 >> 2)])
                output.append(alphabet[Int((b0 & 0x03) << 4 | b1 >> 4)])
                if remaining > 1 { output.append(alphabet[Int((b1 & 0x0F) << 2 | b2 >> 6)]) }
                if remaining > 2 { output.append(alphabet[Int(b2 & 0x3F)]) }
                index += 3
            }
            output.append(UInt8(ascii: "-"))
            shifted.removeAll()
        }

        for scalar in name.unicodeScalars {
            let value = scalar.value
            if value >= 0x20, value <= 0x7E {
                flush()
                output.append(UInt8(value))
                if value == UInt32(UInt8(ascii: "&")) { output.append(UInt8(ascii: "-")) }
            } else {
                shifted.append(contentsOf: Array(String(scalar).utf16))
            }
        }
        flush()
        return String(decoding: output, as: UTF8.self)
    }

    public static func decode(_ encoded: String) throws(DecodingError) -> String {
        let bytes = Array(encoded.utf8)
        var scalars = String.UnicodeScalarView()
        var index = 0
        var previousWasShift = false
        while index < bytes.count {
            let byte = bytes[index]
            guard byte >= 0x20, byte <= 0x7E else { throw .invalidByte(byte, offset: index) }
            guard byte == UInt8(ascii: "&") else {
                scalars.append(Unicode.Scalar(byte))
                previousWasShift = false
                index += 1
                continue
            }
            let shiftStart = index
            index += 1
            guard let end = bytes[index...].firstIndex(of: UInt8(ascii: "-")) else {
                throw .unterminatedShift(offset: shiftStart)
            }
            if end == index {
                scalars.append("&")
                previousWasShift = false
                index = end + 1
                continue
            }
            if previousWasShift { throw .nonCanonical(offset: shiftStart) }
            let units = try decodeBase64UTF16(bytes[index..<end], offset: index)
            var iterator = units.makeIterator()
            var decoder = UTF16()
            var decodedAny = false
            loop: while true {
                switch decoder.decode(&iterator) {
                case .scalarValue(let scalar):
                    // Printable ASCII must be written as itself.
                    if scalar.value >= 0x20, scalar.value <= 0x7E { throw .nonCanonical(offset: shiftStart) }
                    scalars.append(scalar)
                    decodedAny = true
                case .emptyInput:
                    break loop
                case .error:
                    throw .invalidUTF16(offset: shiftStart)
                }
            }
            guard decodedAny else { throw .invalidBase64(offset: shiftStart) }
            previousWasShift = true
            index = end + 1
        }
        return String(scalars)
    }

    private static func decodeBase64UTF16(_ chars: ArraySlice<UInt8>, offset: Int) throws(DecodingError) -> [UInt16] {
        var bits: UInt32 = 0
        var bitCount = 0
        var bytes: [UInt8] = []
        for (position, char) in chars.enumerated() {
            guard char < 128, decodeTable[Int(char)] >= 0 else { throw .invalidBase64(offset: offset + position) }
            bits = (bits << 6) | UInt32(decodeTable[Int(char)])
            bitCount += 6
            if bitCount >= 8 {
                bitCount -= 8
                bytes.append(UInt8((bits >> UInt32(bitCount)) & 0xFF))
            }
        }
        // Leftover bits must be padding: fewer than 6 and all zero.
        guard bitCount < 6, bits & ((1 << UInt32(bitCount)) - 1) == 0 else { throw .invalidBase64(offset: offset) }
        guard bytes.count % 2 == 0 else { throw .invalidUTF16(offset: offset) }
        return stride(from: 0, to: bytes.count, by: 2).map { UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]) }
    }
}
