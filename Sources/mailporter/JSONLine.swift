import HTTPAPI
#if canImport(Glibc)
    import Glibc
#endif

/// The one-line JSON objects the commands print (events, admin objects, folder counts), in the
/// API's own JSON value type so the CLI and the API write JSON the same way.
enum JSONLine {
    /// Prints an object as one JSON line, keys in the given order, flushed so a reading process sees it at once.
    static func print(_ fields: [(String, JSONValue)]) {
        Swift.print(JSONValue.object(fields).serialized)
        fflush(nil)
    }
}
