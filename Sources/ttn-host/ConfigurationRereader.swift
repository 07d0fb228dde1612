import Logging
import TTNHost
import UnixSignals

/// Reads the configuration file again at each SIGHUP (the hosts reload their scripts at the same signal): a file that
/// became wrong is reported with the key at fault, and a change that only a restart applies (applications, sinks,
/// limits, state directory) is reported as such. The running settings stay as they are either way.
struct ConfigurationRereader {
    let path: String
    let loaded: ConfigurationFile?
    let logger: Logger

    func run() async {
        for await _ in await UnixSignalsSequence(trapping: .sighup) {
            do {
                let file = try await ConfigurationFile.load(path: path, environment: processEnvironment)
                if file == loaded {
                    logger.info("SIGHUP: configuration file read again; unchanged", metadata: ["config": "\(path)"])
                } else {
                    logger.warning(
                        "SIGHUP: the configuration file changed; restart ttn-host to apply applications, sinks, limits and state-dir (scripts are reloaded now)",
                        metadata: ["config": "\(path)"]
                    )
                }
            } catch {
                logger.error("SIGHUP: the configuration file is wrong; the running settings stay", metadata: ["error": "\(error)"])
            }
        }
    }
}
