import Contracts
import Foundation
import JSON
import XCTest

/// Deploy/k8s: every service in Services/ is deployed with probes on /healthz and /readyz, its
/// port, requests and limits, a locked-down security context, a Service and a disruption budget;
/// the state-updater is a StatefulSet with its checkpoint volume; only the query API and HTTP
/// ingest are reachable from outside; autoscaling never exceeds the partition count.
/// (kubernetes-validate checks the objects against the API schemas: scripts/validate-k8s.sh.)
final class KubernetesManifestTests: XCTestCase {
    /// Each service's port (the same as compose's and `twinctl up`'s order).
    static let ports = ["query-api": 8080, "ingestor": 8081, "validator": 8082, "state-updater": 8083, "simulator-worker": 8084, "drift-monitor": 8085]

    private func objects() throws -> [JSON] {
        let dir = try repositoryRoot().appendingPathComponent("Deploy/k8s")
        let kustomization = try YAMLSubset.documents(try String(contentsOf: dir.appendingPathComponent("kustomization.yaml"), encoding: .utf8))
        let files = try XCTUnwrap(kustomization.first?["resources"]?.arrayValue).compactMap(\.stringValue)
        let onDisk = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".yaml") && $0 != "kustomization.yaml" }
        XCTAssertEqual(Set(files), Set(onDisk), "kustomization.yaml must list every manifest")
        var objects: [JSON] = []
        for file in files {
            do { objects += try YAMLSubset.documents(try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)) } catch {
                XCTFail("\(file): \(error)")
            }
        }
        return objects
    }

    private func named(_ objects: [JSON], _ kind: String) -> [String: JSON] {
        var result: [String: JSON] = [:]
        for object in objects where object["kind"]?.stringValue == kind { result[object["metadata"]?["name"]?.stringValue ?? "?"] = object }
        return result
    }

    private func servicesInRepository() throws -> Set<String> {
        let dir = try repositoryRoot().appendingPathComponent("Services")
        return Set(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0 != "twinctl" })
    }

    func testEveryServiceIsDeployedWithProbesPortsResourcesAndALockedDownContext() throws {
        let objects = try objects()
        let workloads = named(objects, "Deployment").merging(named(objects, "StatefulSet")) { a, _ in a }
        let services = named(objects, "Service"), budgets = named(objects, "PodDisruptionBudget")
        XCTAssertEqual(Set(workloads.keys), try servicesInRepository(), "every service in Services/ (and nothing else) is deployed")
        for (name, workload) in workloads.sorted(by: { $0.key < $1.key }) {
            let port = try XCTUnwrap(Self.ports[name], "no known port for \(name)")
            let pod = try XCTUnwrap(workload["spec"]?["template"]?["spec"], name)
            let containers = try XCTUnwrap(pod["containers"]?.arrayValue, name)
            XCTAssertEqual(containers.count, 1, name)
            let container = containers[0]
            XCTAssertEqual(container["command"]?.arrayValue?.compactMap(\.stringValue), [name], "\(name) runs its own executable")
            let http = container["ports"]?.arrayValue?.first { $0["name"]?.stringValue == "http" }
            XCTAssertEqual(http?["containerPort"]?.intValue, port, "\(name): container port")
            let env = Dictionary((container["env"]?.arrayValue ?? []).compactMap { e in e["name"]?.stringValue.map { ($0, e["value"]?.stringValue ?? "") } }) { a, _ in a }
            XCTAssertEqual(env["HTTP_PORT"], String(port), "\(name): HTTP_PORT")
            for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
                XCTAssertEqual(container[probe]?["httpGet"]?["path"]?.stringValue, path, "\(name): \(probe)")
                XCTAssertEqual(container[probe]?["httpGet"]?["port"]?.stringValue, "http", "\(name): \(probe) port")
            }
            for part in ["requests", "limits"] {
                for resource in ["cpu", "memory"] {
                    XCTAssertNotNil(container["resources"]?[part]?[resource], "\(name): resources.\(part).\(resource)")
                }
            }
            if let request = Self.quantity(container["resources"]?["requests"]?["memory"]), let limit = Self.quantity(container["resources"]?["limits"]?["memory"]) {
                XCTAssertLessThanOrEqual(request, limit, "\(name): memory request above its limit")
            }
            let podSecurity = pod["securityContext"], security = container["securityContext"]
            XCTAssertEqual(podSecurity?["runAsNonRoot"], .bool(true), "\(name): runAsNonRoot")
            XCTAssertNotEqual(podSecurity?["runAsUser"]?.intValue ?? 0, 0, "\(name): runAsUser")
            XCTAssertEqual(security?["readOnlyRootFilesystem"], .bool(true), "\(name): read-only root filesystem")
            XCTAssertEqual(security?["allowPrivilegeEscalation"], .bool(false), "\(name): privilege escalation")
            XCTAssertEqual(security?["capabilities"]?["drop"]?.arrayValue?.compactMap(\.stringValue), ["ALL"], "\(name): capabilities")
            XCTAssertEqual(pod["automountServiceAccountToken"], .bool(false), "\(name): no API token needed")

            let selector = workload["spec"]?["selector"]?["matchLabels"]?["app.kubernetes.io/name"]?.stringValue
            XCTAssertEqual(selector, name)
            let service = try XCTUnwrap(services[name], "\(name) has no Service")
            XCTAssertEqual(service["spec"]?["selector"]?["app.kubernetes.io/name"]?.stringValue, name)
            XCTAssertEqual(service["spec"]?["ports"]?.arrayValue?.first?["port"]?.intValue, port, "\(name): Service port")
            XCTAssertEqual(service["spec"]?["ports"]?.arrayValue?.first?["targetPort"]?.stringValue, "http")
            let budget = try XCTUnwrap(budgets[name], "\(name) has no PodDisruptionBudget")
            XCTAssertEqual(budget["spec"]?["selector"]?["matchLabels"]?["app.kubernetes.io/name"]?.stringValue, name)
        }
    }

    func testTheStateUpdaterIsAStatefulSetWithItsCheckpointVolumeAndAtMostOneReplicaPerPartition() throws {
        let objects = try objects()
        let updater = try XCTUnwrap(named(objects, "StatefulSet")["state-updater"], "state-updater must be a StatefulSet")
        let replicas = try XCTUnwrap(updater["spec"]?["replicas"]?.intValue)
        XCTAssertLessThanOrEqual(replicas, Int(Topic.partitionCount), "more state-updaters than partitions sit idle")
        let claims = updater["spec"]?["volumeClaimTemplates"]?.arrayValue ?? []
        XCTAssertEqual(claims.compactMap { $0["metadata"]?["name"]?.stringValue }, ["checkpoints"])
        let container = try XCTUnwrap(updater["spec"]?["template"]?["spec"]?["containers"]?.arrayValue?.first)
        let mount = try XCTUnwrap(container["volumeMounts"]?.arrayValue?.first { $0["name"]?.stringValue == "checkpoints" }, "checkpoints not mounted")
        let stateDir = (container["env"]?.arrayValue ?? []).first { $0["name"]?.stringValue == "STATE_DIR" }?["value"]?.stringValue
        let mountPath = try XCTUnwrap(mount["mountPath"]?.stringValue)
        XCTAssertTrue(stateDir?.hasPrefix(mountPath + "/") == true, "STATE_DIR \(stateDir ?? "unset") must be on the volume at \(mountPath)")
    }

    func testOnlyTheQueryAPIAndHTTPIngestAreReachableFromOutside() throws {
        let policies = named(try objects(), "NetworkPolicy")
        XCTAssertTrue(policies.values.contains { $0["spec"]?["podSelector"] == .object(JSONObject()) && $0["spec"]?["ingress"] == nil },
                      "a default-deny ingress policy for every pod")
        var open: Set<String> = []
        for policy in policies.values {
            for rule in policy["spec"]?["ingress"]?.arrayValue ?? [] where rule["from"] == nil {
                let selector = policy["spec"]?["podSelector"]
                let names = selector?["matchExpressions"]?.arrayValue?.flatMap { $0["values"]?.arrayValue?.compactMap(\.stringValue) ?? [] }
                    ?? selector?["matchLabels"]?["app.kubernetes.io/name"]?.stringValue.map { [$0] } ?? ["<every pod>"]
                open.formUnion(names)
            }
        }
        XCTAssertEqual(open, ["query-api", "ingestor"], "pods reachable from anywhere")
    }

    func testAutoscalingOnCPUAndOnLagNeverBeyondThePartitionCount() throws {
        let objects = try objects()
        let hpa = try XCTUnwrap(named(objects, "HorizontalPodAutoscaler")["query-api"], "query-api HPA")
        XCTAssertEqual(hpa["spec"]?["scaleTargetRef"]?["name"]?.stringValue, "query-api")
        XCTAssertEqual(hpa["spec"]?["metrics"]?.arrayValue?.first?["resource"]?["name"]?.stringValue, "cpu")
        let scaled = named(objects, "ScaledObject")
        for (name, topic) in [("validator", Topic.telemetryIngested), ("simulator-worker", Topic.simulationRequests)] {
            let object = try XCTUnwrap(scaled[name], "no KEDA ScaledObject for \(name)")
            XCTAssertEqual(object["spec"]?["scaleTargetRef"]?["name"]?.stringValue, name)
            XCTAssertLessThanOrEqual(object["spec"]?["maxReplicaCount"]?.intValue ?? .max, Int(topic.partitions), "\(name): more replicas than partitions")
            XCTAssertGreaterThanOrEqual(object["spec"]?["minReplicaCount"]?.intValue ?? 0, 1, "\(name): a group that never committed cannot activate from zero")
            let trigger = try XCTUnwrap(object["spec"]?["triggers"]?.arrayValue?.first)
            XCTAssertEqual(trigger["type"]?.stringValue, "kafka")
            XCTAssertEqual(trigger["metadata"]?["consumerGroup"]?.stringValue, "twinstream-\(name)")
            XCTAssertEqual(trigger["metadata"]?["topic"]?.stringValue, topic.name)
            XCTAssertEqual(trigger["metadata"]?["allowIdleConsumers"]?.stringValue, "false")
        }
    }

    /// `128Mi` → bytes; nil for what this test does not need to read.
    static func quantity(_ value: JSON?) -> Double? {
        guard let text = value?.stringValue else { return value?.doubleValue }
        for (suffix, factor) in [("Ki", 1024.0), ("Mi", 1048576.0), ("Gi", 1073741824.0)] where text.hasSuffix(suffix) {
            return Double(text.dropLast(2)).map { $0 * factor }
        }
        return Double(text)
    }
}
