import ServiceKit

// simulator-worker: starts, reports healthy and idles until its simulation issue lands.
await ServiceRuntime.main(name: "simulator-worker", defaultHTTPPort: 8084) { _, _ in
    IdleService()
}
