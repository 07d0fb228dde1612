import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where ``JSONLogHandler`` writes its lines: a file descriptor, one `write` per line, one line at a time.
///
/// Lines from different threads never interleave: each is written whole, under a lock, by a single `write(2)` (more
/// only if the kernel takes part of it, which a pipe or terminal does for lines past its buffer). Every handler
/// that writes to the same descriptor should share one output, as the ones made with the default do.
public final class JSONLogOutput: Sendable {
    /// Standard error, shared by every handler that does not name another output.
    public static let standardError = JSONLogOutput(fileDescriptor: STDERR_FILENO)

    private let fileDescriptor: Int32
    private let lock = NIOLock()

    /// - Parameter fileDescriptor: open for writing; the output never closes it.
    public init(fileDescriptor: Int32) {
        self.fileDescriptor = fileDescriptor
    }

    /// Writes `line` (which ends with a newline). A failed write is dropped: there is nowhere left to report it.
    func emit(_ line: [UInt8]) {
        lock.withLock {
            line.withUnsafeBytes { bytes in
                var offset = 0
                while offset < bytes.count {
                    let written = write(fileDescriptor, bytes.baseAddress! + offset, bytes.count - offset)
                    if written >= 0 {
                        offset += written
                    } else if errno != EINTR {
                        return
                    }
                }
            }
        }
    }
}
