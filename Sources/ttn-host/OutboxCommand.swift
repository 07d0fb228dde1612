import ArgumentParser
import Foundation
import TTNState

/// `ttn-host outbox list|resend`: the records waiting for their sinks, and the dead letters.
struct OutboxCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "outbox",
        abstract: "Lists the records waiting for their sinks and the dead letters, or sends dead letters again.",
        discussion: """
            Works beside a running ttn-host on the same state directory: records put back with resend are \
            delivered by that host within a few seconds, or by the next one to start.
            """,
        subcommands: [List.self, Resend.self]
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Prints, per sink, the records waiting and the dead letters; with --dead, every dead letter."
        )

        @OptionGroup var options: StateOptions

        @Option(help: "Only this sink.")
        var sink: String?

        @Flag(help: "Print every dead letter: id, sink, script, device, emit time, attempts, why it was given up, value.")
        var dead = false

        func run() throws {
            let outbox = try OutboxCommand.open(options)
            defer { outbox.close() }
            let summaries = try outbox.summaries().filter { sink == nil || $0.sink == sink }
            if summaries.isEmpty { printLine("the outbox is empty") }
            for summary in summaries {
                let oldest = summary.oldestPending.map { ", oldest \($0)" } ?? ""
                printLine("\(summary.sink)\t\(summary.pending) waiting\(oldest)\t\(summary.deadLetters) dead letters")
            }
            guard dead else { return }
            for letter in try outbox.deadLetters(sink: sink) {
                let record = letter.record
                printLine(
                    "DEAD \(record.id) sink=\(record.sink) app=\(record.application) script=\(record.script) device=\(record.device ?? "-") "
                        + "time=\(record.time) attempts=\(record.attempts) reason=\(letter.reason.debugDescription) value=\(record.value)"
                )
            }
        }
    }

    struct Resend: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Puts dead letters back at the end of their sink's outbox, with their ids, to be delivered again."
        )

        @OptionGroup var options: StateOptions

        @Option(help: "Only the dead letters of this sink.")
        var sink: String?

        @Argument(help: "Ids of the dead letters to send again (as `outbox list --dead` prints them); none: all of them.")
        var ids: [String] = []

        func run() throws {
            let outbox = try OutboxCommand.open(options)
            defer { outbox.close() }
            let count = try outbox.resend(sink: sink, ids: ids.isEmpty ? nil : ids)
            printLine("put \(count) dead letter\(count == 1 ? "" : "s") back in the outbox")
            if !ids.isEmpty && count < ids.count {
                throw ValidationError("\(ids.count - count) of the ids given are not dead letters\(sink.map { " of sink \($0)" } ?? "").")
            }
        }
    }

    /// The outbox of the state directory, beside a host that may run on it.
    static func open(_ options: StateOptions) throws -> Outbox {
        let directory = StateOptions.directory(options.stateDirectory)
        do {
            guard let outbox = try Outbox(directory: directory) else {
                throw ValidationError("There is no outbox in '\(directory)' (no ttn-host has run there with sinks); give the state directory with --state-dir or TTN_STATE_DIR.")
            }
            return outbox
        } catch let error as StateError {
            throw ValidationError(error.description)
        }
    }
}
