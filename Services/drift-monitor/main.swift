import ServiceKit

// drift-monitor: starts, reports healthy and idles until its drift issue lands.
await ServiceRuntime.main(name: "drift-monitor", defaultHTTPPort: 8085) { _, _ in
    IdleService()
}
