/// A service with no work yet: it stays up (healthy and ready) until asked to stop.
public struct IdleService: Service {
    public init() {}

    public func run() async throws {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(3600))
        }
    }
}
