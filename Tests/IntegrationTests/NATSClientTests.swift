import Foundation
import TTNNATS
import TTNSync
import Testing

/// A nats-server with JetStream on a free loopback port and a fresh store directory, started for one test.
struct NATSTestServer {
    /// The nats-server scripts/start-nats runs: `$TTN_NATS_SERVER`, else the one scripts/setup installs in .tools/nats.
    static let path: String? = {
        let installed = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".tools/nats/bin/nats-server").path
        let path = Broker.environment["TTN_NATS_SERVER"] ?? installed
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }()
    /// Run when nats-server is installed, and always in CI, where a missing nats-server must fail.
    static let shouldRun = path != nil || Broker.environment["CI"] != nil

    let path: String
    let port: Int
    let directory: String
    private(set) var process: ChildProcess

    var url: String { "nats://127.0.0.1:\(port)" }

    /// Starts the server and waits until it accepts connections; kills it and fails the test when it does not.
    static func start() async throws -> NATSTestServer {
        let path = try #require(path, "nats-server is not installed; scripts/setup installs it")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("nats-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        let port = try freePort()
        var server = NATSTestServer(path: path, port: port, directory: directory, process: try spawn(path, port, directory))
        try await server.waitUntilAccepting()
        return server
    }

    /// Starts the process again, on the same port and store directory, after ``kill()``.
    mutating func restart() async throws {
        process = try Self.spawn(path, port, directory)
        try await waitUntilAccepting()
    }

    private mutating func waitUntilAccepting() async throws {
        let port = port
        let accepting = await eventually { accepts(port: port) }
        // Killed, but its directory (with the logs) is kept.
        if !accepting { kill() }
        try #require(accepting, "nats-server did not start; see the logs in \(directory)")
    }

    private static func spawn(_ path: String, _ port: Int, _ directory: String) throws -> ChildProcess {
        try ChildProcess(
            path, ["-js", "-a", "127.0.0.1", "-p", "\(port)", "-sd", "\(directory)/store"],
            environment: ProcessInfo.processInfo.environment, output: "\(directory)/log-\(UUID().uuidString.prefix(8))"
        )
    }

    /// Kills the server (SIGKILL: nothing is shut down gracefully) and reaps it.
    func kill() { process.stop() }

    /// Kills the server and removes its directory.
    func stop() {
        kill()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// The ports ``freePort()`` handed out in this process, so that no two tests get the same one.
private let portsHandedOut = Locked(Set<Int>())

/// A loopback port that was free a moment ago and that no other test of this process got: bound with port 0, read
/// back, released.
fileprivate func freePort() throws -> Int {
    for _ in 0..<100 {
        let port = try boundAndReleasedPort()
        if portsHandedOut.withLock({ $0.insert(port).inserted }) { return port }
    }
    throw NATSTestError.noFreePort
}

fileprivate enum NATSTestError: Error { case noFreePort }

private func boundAndReleasedPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    try #require(fd >= 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
        }
    }
    try #require(bound)
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Whether something accepts TCP connections on the loopback `port`.
fileprivate func accepts(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    return withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
    }
}

/// Runs a blocking libnats call on a thread of its own, so that a fetch waiting out its timeout holds none of the
/// cooperative pool's few threads (which the other integration tests' waits share).
fileprivate func blocking<Value: Sendable>(_ work: @escaping @Sendable () throws -> Value) async throws -> Value {
    try await onOwnThread(named: "nats-test") { Result { try work() } }.get()
}

/// The NATSError a blocking call threw, or nil when it threw none (or another error).
fileprivate func natsError(_ work: @escaping @Sendable () throws -> Void) async -> NATSError? {
    await onOwnThread(named: "nats-test") {
        do {
            try work()
            return nil
        } catch {
            return error as? NATSError
        }
    }
}

@Suite("NATS client (TTNNATS) against nats-server", .enabled(if: NATSTestServer.shouldRun), .timeLimit(.minutes(3)))
struct NATSClientTests {
    static func connect(
        _ server: NATSTestServer, _ configure: (inout NATSConfiguration) -> Void = { _ in }
    ) async throws -> NATSConnection {
        var configuration = NATSConfiguration(servers: [server.url], name: "nats-client-tests")
        configure(&configuration)
        let settings = configuration
        return try await blocking { try NATSConnection(settings) }
    }

    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    /// How long a fetch that expects a message waits for it: 5 s, stretched by TTN_TEST_TIME_SCALE.
    static let messageWait = Duration.seconds(5) * Broker.timeScale

    @Test("a connection fails when no server answers, publishes with core NATS, and refuses work once closed")
    func connection() async throws {
        let unused = try freePort()
        let nobody = NATSConfiguration(servers: ["nats://127.0.0.1:\(unused)"], name: "none")
        let refused = await natsError { _ = try NATSConnection(nobody) }
        #expect(refused?.kind == .connection)
        let noServers = await natsError { _ = try NATSConnection(NATSConfiguration(servers: [], name: "none")) }
        #expect(noServers?.kind == .invalid)

        let server = try await NATSTestServer.start()
        defer { server.stop() }
        let connection = try await Self.connect(server)
        #expect(connection.isConnected)
        #expect(connection.connectedURL == server.url)
        try connection.publish("core.subject", Self.bytes("hello"))
        try await blocking { try connection.flush(timeout: .seconds(5) * Broker.timeScale) }

        connection.close()
        connection.close()
        #expect(!connection.isConnected)
        let afterClose = await natsError { try connection.publish("core.subject", [1]) }
        #expect(afterClose?.kind == .connection)
    }

    @Test("ensureStream creates a stream, leaves it alone when unchanged, updates its subjects, and refuses a new retention")
    func streamCreateAndUpdate() async throws {
        let server = try await NATSTestServer.start()
        defer { server.stop() }
        let js = try await Self.connect(server).jetStream()

        var settings = StreamSettings(name: "UPLINKS", subjects: ["up.a"], retention: .limits, maxAge: .seconds(3600))
        #expect(try js.ensureStream(settings) == true)
        #expect(try js.ensureStream(settings) == false)
        #expect(try js.publish("up.a", [1], messageID: nil).stream == "UPLINKS")

        let unrouted = await natsError { _ = try js.publish("up.b", [2], messageID: nil) }
        #expect(unrouted?.kind == .notFound)

        settings.subjects = ["up.a", "up.b"]
        settings.duplicateWindow = .seconds(30)
        #expect(try js.ensureStream(settings) == false)
        let ack = try js.publish("up.b", [2], messageID: nil)
        #expect(ack.stream == "UPLINKS")
        #expect(ack.sequence == 2)
        #expect(try js.streamMessageCount("UPLINKS") == 2)

        settings.retention = .workQueue
        let changedSettings = settings
        let changed = await natsError { try js.ensureStream(changedSettings) }
        #expect(changed?.kind == .invalid)
        #expect(changed?.jetStreamCode != nil)

        let missing = await natsError { _ = try js.streamMessageCount("NOPE") }
        #expect(missing?.kind == .notFound)
        #expect(missing?.jetStreamCode == 10059)
    }

    @Test("a message id published twice is stored once; the second publish is acknowledged as a duplicate")
    func duplicateMessageID() async throws {
        let server = try await NATSTestServer.start()
        defer { server.stop() }
        let js = try await Self.connect(server).jetStream()
        try js.ensureStream(StreamSettings(name: "DEDUP", subjects: ["dedup.>"], retention: .limits))

        let first = try js.publish("dedup.x", Self.bytes("one"), messageID: "uplink-1")
        let second = try js.publish("dedup.x", Self.bytes("one again"), messageID: "uplink-1")
        #expect(!first.duplicate)
        #expect(second.duplicate)
        #expect(second.sequence == first.sequence)
        #expect(try js.streamMessageCount("DEDUP") == 1)

        let other = try js.publish("dedup.x", Self.bytes("two"), messageID: "uplink-2")
        #expect(!other.duplicate)
        #expect(other.sequence == first.sequence + 1)
        #expect(try js.streamMessageCount("DEDUP") == 2)
    }

    @Test("a work-queue consumer with max ack pending 1 delivers the next message only once the previous one is acked")
    func workQueueInOrder() async throws {
        let server = try await NATSTestServer.start()
        defer { server.stop() }
        let js = try await Self.connect(server).jetStream()
        try js.ensureStream(StreamSettings(name: "WORK", subjects: ["work.>"], retention: .workQueue))
        let consumer = ConsumerSettings(durable: "worker", filterSubject: "work.>", maxAckPending: 1)
        try js.ensureConsumer(stream: "WORK", consumer)
        try js.ensureConsumer(stream: "WORK", consumer)
        for number in 1...3 { _ = try js.publish("work.job", Self.bytes("\(number)"), messageID: "job-\(number)") }

        let subscription = try js.pullSubscription(stream: "WORK", consumer: "worker", filterSubject: "work.>")
        let first = try await blocking { try subscription.fetch(batch: 1, timeout: Self.messageWait) }
        #expect(first.map(\.payload) == [Self.bytes("1")])
        #expect(first.first?.streamSequence == 1)
        #expect(first.first?.deliveryCount == 1)
        #expect(first.first?.subject == "work.job")
        #expect(first.first?.header("Nats-Msg-Id") == "job-1")
        #expect(first.first?.header("No-Such-Header") == nil)

        // Message 1 is pending: nothing more comes, and the timeout is no error.
        let blocked = try await blocking { try subscription.fetch(batch: 1, timeout: .milliseconds(500)) }
        #expect(blocked.isEmpty)
        let blockedBatch = try await blocking { try subscription.fetch(batch: 5, timeout: .milliseconds(500)) }
        #expect(blockedBatch.isEmpty)

        try await blocking { try first.first?.acknowledge() }
        let second = try await blocking { try subscription.fetch(batch: 1, timeout: Self.messageWait) }
        #expect(second.map(\.payload) == [Self.bytes("2")])
        #expect(second.first?.streamSequence == 2)
        try await blocking { try second.first?.acknowledge() }
        let third = try await blocking { try subscription.fetch(batch: 1, timeout: Self.messageWait) }
        #expect(third.map(\.payload) == [Self.bytes("3")])
        try await blocking { try third.first?.acknowledge() }

        // Acknowledged messages leave a work queue.
        #expect(await eventually { (try? js.streamMessageCount("WORK")) == 0 })

        // Closing the subscription leaves the durable consumer: a new one binds to it.
        subscription.close()
        subscription.close()
        let closedFetch = await natsError { _ = try subscription.fetch(batch: 1, timeout: .milliseconds(100)) }
        #expect(closedFetch?.kind == .invalid)
        _ = try js.publish("work.job", Self.bytes("4"), messageID: "job-4")
        let again = try js.pullSubscription(stream: "WORK", consumer: "worker", filterSubject: "work.>")
        let fourth = try await blocking { try again.fetch(batch: 1, timeout: Self.messageWait) }
        #expect(fourth.map(\.payload) == [Self.bytes("4")])
        try await blocking { try fourth.first?.acknowledge() }

        let missing = await natsError { _ = try js.pullSubscription(stream: "WORK", consumer: "nobody", filterSubject: "work.>") }
        #expect(missing?.kind == .notFound)
        let noStream = await natsError { try js.ensureConsumer(stream: "NOPE", consumer) }
        #expect(noStream?.kind == .notFound)
    }

    @Test("a rejected message comes again with its delivery count raised, at once or after the delay")
    func rejectRedelivers() async throws {
        let server = try await NATSTestServer.start()
        defer { server.stop() }
        let js = try await Self.connect(server).jetStream()
        try js.ensureStream(StreamSettings(name: "NAK", subjects: ["nak.>"], retention: .workQueue))
        try js.ensureConsumer(stream: "NAK", ConsumerSettings(durable: "worker", filterSubject: "nak.>"))
        _ = try js.publish("nak.job", Self.bytes("retry me"), messageID: nil)
        let subscription = try js.pullSubscription(stream: "NAK", consumer: "worker", filterSubject: "nak.>")

        let first = try #require(try await blocking { try subscription.fetch(batch: 1, timeout: Self.messageWait) }.first)
        #expect(first.deliveryCount == 1)
        try first.reject(delay: nil)

        let second = try #require(try await blocking { try subscription.fetch(batch: 1, timeout: Self.messageWait) }.first)
        #expect(second.streamSequence == first.streamSequence)
        #expect(second.payload == Self.bytes("retry me"))
        #expect(second.deliveryCount == 2)
        try second.reject(delay: .milliseconds(300))

        let third = try #require(try await blocking { try subscription.fetch(batch: 1, timeout: Self.messageWait * 2) }.first)
        #expect(third.streamSequence == first.streamSequence)
        #expect(third.deliveryCount == 3)
        try await blocking { try third.acknowledge() }
        #expect(await eventually { (try? js.streamMessageCount("NAK")) == 0 })
    }

    @Test("a message not acked within the ack wait comes again; a terminated one does not")
    func ackWaitRedelivers() async throws {
        let server = try await NATSTestServer.start()
        defer { server.stop() }
        let js = try await Self.connect(server).jetStream()
        try js.ensureStream(StreamSettings(name: "SLOW", subjects: ["slow.>"], retention: .limits))
        // The terminate below must reach the server within one ack wait of the second delivery, or the server rightly
        // delivers the message a third time first: so the ack wait stretches with the sanitizers' stalls, in which two
        // cores are shared by two dozen instrumented tests.
        let ackWait = Duration.seconds(5) * Broker.timeScale
        try js.ensureConsumer(stream: "SLOW", ConsumerSettings(durable: "worker", filterSubject: "slow.>", ackWait: ackWait))
        _ = try js.publish("slow.job", Self.bytes("forgotten"), messageID: nil)
        let subscription = try js.pullSubscription(stream: "SLOW", consumer: "worker", filterSubject: "slow.>")

        let first = try #require(try await blocking { try subscription.fetch(batch: 1, timeout: Self.messageWait) }.first)
        #expect(first.deliveryCount == 1)
        // Not acknowledged: the server delivers it again once the ack wait passed.
        let second = try #require(try await blocking { try subscription.fetch(batch: 1, timeout: ackWait * 3) }.first)
        #expect(second.streamSequence == first.streamSequence)
        #expect(second.payload == Self.bytes("forgotten"))
        #expect(second.deliveryCount == 2)

        try second.terminate()
        // Twice the ack wait: a message that was not terminated would have come again by then.
        let after = try await blocking { try subscription.fetch(batch: 1, timeout: ackWait * 2) }
        #expect(after.isEmpty, "delivered again after terminate: deliveries \(after.map(\.deliveryCount))")
        // Settled: libnats sends nothing more for it.
        try second.reject(delay: nil)
        let stillNothing = try await blocking { try subscription.fetch(batch: 1, timeout: .milliseconds(500)) }
        #expect(stillNothing.isEmpty)
    }

    @Test("a key-value bucket creates, refuses an existing key and a stale revision, deletes and lists keys; opening only an existing one finds none before")
    func keyValue() async throws {
        let server = try await NATSTestServer.start()
        defer { server.stop() }
        let js = try await Self.connect(server).jetStream()

        let absent = await natsError { _ = try js.keyValue(bucket: "state", create: nil) }
        #expect(absent?.kind == .notFound)
        #expect(try js.existingKeyValue(bucket: "state") == nil, "a missing bucket is nil, and is not created")
        #expect(try js.existingKeyValue(bucket: "state") == nil)
        let bucket = try js.keyValue(bucket: "state", create: KeyValueSettings(bucket: "state", history: 5))
        _ = try js.keyValue(bucket: "state", create: nil)
        #expect(try js.existingKeyValue(bucket: "state") != nil)
        #expect(try bucket.keys() == [])
        #expect(try bucket.get("device.1") == nil)

        let created = try bucket.create("device.1", Self.bytes("a"))
        let exists = await natsError { _ = try bucket.create("device.1", Self.bytes("b")) }
        #expect(exists?.kind == .exists)
        #expect(try bucket.get("device.1") == KeyValueEntry(key: "device.1", value: Self.bytes("a"), revision: created))

        let updated = try bucket.update("device.1", Self.bytes("c"), lastRevision: created)
        #expect(updated > created)
        let stale = await natsError { _ = try bucket.update("device.1", Self.bytes("d"), lastRevision: created) }
        #expect(stale?.kind == .wrongLastRevision)
        #expect(stale?.jetStreamCode == 10071)
        #expect(try bucket.get("device.1")?.value == Self.bytes("c"))

        let put = try bucket.put("device.2", [])
        #expect(put > updated)
        #expect(try bucket.get("device.2") == KeyValueEntry(key: "device.2", value: [], revision: put))
        #expect(try bucket.keys().sorted() == ["device.1", "device.2"])

        try bucket.delete("device.1")
        #expect(try bucket.get("device.1") == nil)
        #expect(try bucket.keys() == ["device.2"])
        // A deleted key may be created again.
        let recreated = try bucket.create("device.1", Self.bytes("e"))
        #expect(try bucket.get("device.1") == KeyValueEntry(key: "device.1", value: Self.bytes("e"), revision: recreated))

        let invalid = await natsError { _ = try bucket.create("device.*", [1]) }
        #expect(invalid?.kind == .invalid)
        let mismatch = await natsError { _ = try js.keyValue(bucket: "state", create: KeyValueSettings(bucket: "other")) }
        #expect(mismatch?.kind == .invalid)
    }

    @Test("the connection reports a lost server, reconnects on its own when it is back, and JetStream works again")
    func reconnect() async throws {
        var server = try await NATSTestServer.start()
        defer { server.stop() }
        let events = Recorder<String>()
        let connection = try await Self.connect(server) {
            $0.reconnectWait = .milliseconds(100)
            $0.requestTimeout = .seconds(1)
            $0.onDisconnect = { events.append("disconnected") }
            $0.onReconnect = { events.append("reconnected") }
        }
        let js = try connection.jetStream()
        try js.ensureStream(StreamSettings(name: "KEEP", subjects: ["keep.>"], retention: .limits))
        _ = try js.publish("keep.a", [1], messageID: "a")

        server.kill()
        #expect(await eventually { events.all == ["disconnected"] })
        #expect(!connection.isConnected)
        let whileDown = await natsError { _ = try js.streamMessageCount("KEEP") }
        #expect(whileDown != nil)

        try await server.restart()
        #expect(await eventually { events.all == ["disconnected", "reconnected"] })
        #expect(connection.isConnected)
        // The stream was stored in files, so it survived the restart, and its duplicate window with it.
        #expect(try await blocking { try js.publish("keep.a", [1], messageID: "a") }.duplicate)
        #expect(try js.streamMessageCount("KEEP") == 1)

        connection.close()
        #expect(await eventually { events.count == 3 })
        #expect(events.all.last == "disconnected")
    }
}
