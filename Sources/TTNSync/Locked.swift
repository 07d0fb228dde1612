#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A value behind a lock, with the `withLock` API of `Synchronization.Mutex`, on a pthread mutex.
///
/// Why not `Mutex`: on Linux, Swift's `Mutex` hands a contended lock from thread to thread through the kernel
/// (a futex) inside the Swift runtime, which is not instrumented. ThreadSanitizer then sees no ordering between
/// the threads and reports every contended `Mutex`-guarded access as a data race, hiding real races among false
/// ones. ThreadSanitizer intercepts pthread mutexes, so behind this lock its reports are real. Uncontended, both
/// cost one atomic operation each way.
package final class Locked<Value>: @unchecked Sendable {
    // @unchecked Sendable, as Mutex: `value` is only touched between pthread_mutex_lock and unlock in `withLock`,
    // and comes in and goes out as `sending`, so no other reference to it can be used concurrently.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    package init(_ initialValue: consuming sending Value) {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        let status = pthread_mutex_init(mutex, nil)
        precondition(status == 0, "pthread_mutex_init failed: \(status)")
        value = initialValue
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Runs `body` with exclusive access to the value.
    package func withLock<Result, E: Error>(_ body: (inout sending Value) throws(E) -> sending Result) throws(E) -> sending Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}

/// Mutual exclusion with no value behind it, on a pthread mutex as ``Locked``: for a section that must not run on
/// two threads at once. Use it rather than `Locked<()>`: ThreadSanitizer reports the `inout` accesses to a
/// zero-sized value behind a lock as races, as though the mutex did not order them.
package final class Lock: @unchecked Sendable {
    // @unchecked Sendable: its only state is the mutex, which exists to be shared between threads.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    package init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        let status = pthread_mutex_init(mutex, nil)
        precondition(status == 0, "pthread_mutex_init failed: \(status)")
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Runs `body` while no other thread runs a body of this lock.
    package func withLock<Result, E: Error>(_ body: () throws(E) -> Result) throws(E) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}
