import Foundation
import Logging
import TTNSync

/// `type: file`: appends each record's ``SinkRecord/envelope`` as one line to a file, and rotates it by size.
///
/// A delivery is one `write` of the whole batch followed by `fsync`: once ``deliver(_:)`` returns, the lines are on
/// disk. A write that fails half-way is cut off again, so a retry never follows a partial line. Before a batch
/// that would make a non-empty file larger than ``FileSinkConfiguration/maxSize``, the file is renamed `<path>.1`
/// (`<path>.1` becomes `<path>.2`, and so on, up to ``FileSinkConfiguration/keep``; the oldest is overwritten) and
/// a new one started, so no batch is ever split between two files. The file stays open between deliveries; when
/// someone else moves or deletes it (logrotate, say), the next delivery notices and opens `path` again.
///
/// The file's directory must exist: the sink never creates directories.
public final class FileSink: Sink {
    public let name: String
    public let configuration: FileSinkConfiguration
    public let batchLimit: Int
    private let logger: Logger
    /// The open file, nil before the first delivery and after ``shutdown()``. Used only on ``queue``; the lock
    /// makes that safe to share without relying on it.
    private let file = Locked<OpenFile?>(nil)
    /// Writing and `fsync` block; they run here, off the cooperative thread pool, one delivery at a time.
    private let queue: DispatchQueue

    /// - Parameters:
    ///   - name: the sink's name in the configuration, used in errors and logs.
    ///   - batchLimit: the most records one delivery writes. Default 500.
    public init(name: String, configuration: FileSinkConfiguration, batchLimit: Int = 500, logger: Logger = Logger(label: "ttn.sinks")) {
        self.name = name
        self.configuration = configuration
        self.batchLimit = max(1, batchLimit)
        self.logger = logger
        self.queue = DispatchQueue(label: "ttn-sink-file-\(name)")
    }

    deinit {
        file.withLock { $0?.close() }
    }

    public func deliver(_ records: [SinkRecord]) async throws(SinkError) {
        var lines: [UInt8] = []
        for record in records {
            lines.append(contentsOf: record.envelope.utf8)
            lines.append(UInt8(ascii: "\n"))
        }
        let outcome = await withCheckedContinuation { (continuation: CheckedContinuation<Result<Void, SinkError>, Never>) in
            queue.async { [lines] in
                continuation.resume(returning: Result { () throws(SinkError) in try self.append(lines) })
            }
        }
        try outcome.get()
    }

    public func shutdown() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.async {
                self.file.withLock { file in
                    file?.close()
                    file = nil
                }
                continuation.resume()
            }
        }
    }

    // MARK: On the queue

    private func append(_ lines: [UInt8]) throws(SinkError) {
        try file.withLock { (file: inout OpenFile?) throws(SinkError) in
            if let open = file, !open.isStill(at: configuration.path) {
                logger.info(
                    "File sink: the file was moved or deleted; opening it again",
                    metadata: ["sink": "\(name)", "path": "\(configuration.path)"]
                )
                open.close()
                file = nil
            }
            var open: OpenFile
            if let alreadyOpen = file {
                open = alreadyOpen
            } else {
                open = try openFile()
                file = open
            }
            var size = try currentSize(of: open)
            if let maxSize = configuration.maxSize, size > 0, size + lines.count > maxSize {
                open.close()
                file = nil
                try rotate()
                open = try openFile()
                file = open
                size = try currentSize(of: open)
            }
            try writeAndSync(lines, to: open, truncatingOnFailureTo: size)
        }
    }

    private func openFile() throws(SinkError) -> OpenFile {
        let path = configuration.path
        let descriptor = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            let code = errno
            let directory = (path as NSString).deletingLastPathComponent
            if code == ENOENT, !directory.isEmpty, !FileManager.default.fileExists(atPath: directory) {
                throw SinkError(
                    "sink \(name): cannot open \(path): the directory \(directory) does not exist; create it or change the sink's path"
                )
            }
            throw failure("cannot open \(path)", code)
        }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            let code = errno
            closeDescriptor(descriptor)
            throw failure("cannot read the status of \(path)", code)
        }
        // The file may be new: make its name durable too, or a crash could lose the whole file after a delivery.
        syncDirectory()
        return OpenFile(descriptor: descriptor, device: status.st_dev, inode: status.st_ino)
    }

    private func currentSize(of file: OpenFile) throws(SinkError) -> Int {
        var status = stat()
        guard fstat(file.descriptor, &status) == 0 else { throw failure("cannot read the size of \(configuration.path)", errno) }
        return Int(status.st_size)
    }

    /// Writes all of `lines` and syncs them; on failure cuts the file back to `size`, so that no partial line stays.
    private func writeAndSync(_ lines: [UInt8], to file: OpenFile, truncatingOnFailureTo size: Int) throws(SinkError) {
        var written = 0
        while written < lines.count {
            let result = lines.withUnsafeBytes { write(file.descriptor, $0.baseAddress! + written, $0.count - written) }
            if result < 0 {
                let code = errno
                if code == EINTR { continue }
                ftruncate(file.descriptor, off_t(size))
                throw failure("cannot write to \(configuration.path)", code)
            }
            written += result
        }
        guard fsync(file.descriptor) == 0 else {
            let code = errno
            ftruncate(file.descriptor, off_t(size))
            throw failure("cannot sync \(configuration.path) to disk", code)
        }
    }

    /// Renames `path` to `path.1`, after moving each `path.N` to `path.N+1` (the one at ``keep`` is overwritten).
    private func rotate() throws(SinkError) {
        let path = configuration.path, keep = configuration.keep
        guard keep > 0 else {
            if unlink(path) != 0, errno != ENOENT { throw failure("cannot delete \(path) to rotate it", errno) }
            return
        }
        for index in stride(from: keep - 1, through: 1, by: -1) {
            if rename("\(path).\(index)", "\(path).\(index + 1)") != 0, errno != ENOENT {
                throw failure("cannot rename \(path).\(index) to \(path).\(index + 1)", errno)
            }
        }
        guard rename(path, "\(path).1") == 0 else { throw failure("cannot rename \(path) to \(path).1", errno) }
        logger.info("File sink rotated its file", metadata: ["sink": "\(name)", "path": "\(path)", "keep": "\(keep)"])
    }

    /// Syncs the file's directory, so that a file just created or renamed keeps its name after a crash.
    private func syncDirectory() {
        let directory = (configuration.path as NSString).deletingLastPathComponent
        let descriptor = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { return }
        fsync(descriptor)
        closeDescriptor(descriptor)
    }

    private func failure(_ what: String, _ code: Int32) -> SinkError {
        SinkError("sink \(name): \(what): \(String(cString: strerror(code))) (errno \(code))")
    }
}

/// The sink's open file, and which file it is, to notice when `path` names another one.
private struct OpenFile {
    let descriptor: Int32
    let device: dev_t
    let inode: ino_t

    /// Whether `path` still names this file (not deleted, moved away or replaced).
    func isStill(at path: String) -> Bool {
        var status = stat()
        return stat(path, &status) == 0 && status.st_dev == device && status.st_ino == inode
    }

    func close() {
        closeDescriptor(descriptor)
    }
}

/// The system's `close`, which `OpenFile.close()` hides inside the type.
private func closeDescriptor(_ descriptor: Int32) {
    close(descriptor)
}
