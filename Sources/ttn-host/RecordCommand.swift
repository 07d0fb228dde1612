import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TTNHost
import TTNMQTT
import TTNSync

/// `ttn-host record FILE`: appends the application's live uplinks to FILE as JSON lines, for `replay`.
struct RecordCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "record",
        abstract: "Appends every live uplink of the application to FILE, one JSON line each, until SIGINT/SIGTERM.",
        discussion: """
            The file is what `ttn-host replay` reads. The connection options and their TTN_* variables are those \
            of `run`; a connection that fails at the start exits 2.
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "The file to append to; created if missing.")
    var file: String

    func validate() throws {
        try connection.validatePort()
        try connection.validateApplication(configurationFileGiven: false)
    }

    func run() async throws {
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        let client: MQTTClient.Configuration
        do {
            client = try connection.clientConfiguration()
            try client.validate()
        } catch {
            throw ValidationError(error.description)
        }
        guard FileManager.default.fileExists(atPath: file) || FileManager.default.createFile(atPath: file, contents: nil),
            let output = FileHandle(forWritingAtPath: file)
        else {
            throw ValidationError("Cannot write to '\(file)'.")
        }
        output.seekToEndOfFile()
        let recorder = UplinkRecorder(source: MQTTUplinkSource(configuration: client), output: output)
        let group = ServiceGroup(
            services: [recorder], gracefulShutdownSignals: [.sigterm, .sigint], logger: Logger(label: "ttn-host record")
        )
        do {
            try await group.run()
        } catch let error as TTNError {
            FileHandle.standardError.write(Data("ttn-host: \(error)\n".utf8))
            throw ExitCode(2)
        }
    }
}

/// Writes each uplink of a source as one JSON line, from the source's thread, until graceful shutdown.
final class UplinkRecorder: Service, UplinkReceiver {
    private let source: MQTTUplinkSource
    private let output: FileHandle
    private let count = Atomic(0)

    init(source: MQTTUplinkSource, output: FileHandle) {
        self.source = source
        self.output = output
    }

    func run() async throws {
        let source = self.source
        // Connecting and disconnecting block: on a thread of their own.
        try await onOwnThread(named: "ttn-host record") { Result { () throws(TTNError) in try source.start(delivering: self) } }
            .get()
        FileHandle.standardError.write(Data("ttn-host: recording uplinks to the file; SIGINT or SIGTERM stops\n".utf8))
        try? await gracefulShutdown()
        await onOwnThread(named: "ttn-host record") { source.stop() }
        FileHandle.standardError.write(Data("ttn-host: recorded \(count.load(ordering: .relaxed)) uplinks\n".utf8))
    }

    /// One line: the uplink's JSON with any line breaks between its tokens made spaces (a JSON string holds none).
    func receive(_ uplink: Uplink) {
        var line = uplink.json.utf8.map { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") ? UInt8(ascii: " ") : $0 }
        line.append(UInt8(ascii: "\n"))
        output.write(Data(line))
        count.add(1, ordering: .relaxed)
    }

    func endOfBurst() {}
}
