import Foundation
import JSON
import JSONSchema
import XCTest
@testable import Models

/// Paths and helpers shared by the model tests. Files are found relative to the package root,
/// the first directory above this file that holds `Package.swift`.
enum TestSupport {
    static let packageRoot: URL? = {
        var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while dir.path != "/" {
            if FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) { return dir }
            dir = dir.deletingLastPathComponent()
        }
        return nil
    }()

    /// `Schemas/models/`.
    static func modelsDirectory() throws -> URL {
        let root = try XCTUnwrap(packageRoot, "package root not found")
        return root.appendingPathComponent("Schemas/models")
    }

    /// The registry of the shipped models.
    static func shippedRegistry() throws -> ModelRegistry {
        try ModelRegistry(directory: modelsDirectory().path)
    }

    /// A fresh temporary directory holding `model.schema.json`, copies of `includeShipped` model
    /// files and the given files (name → text).
    static func directory(with files: [String: String], includeShipped: [String] = []) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("models-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let source = try modelsDirectory()
        for name in [ModelRegistry.schemaFileName] + includeShipped {
            try FileManager.default.copyItem(at: source.appendingPathComponent(name), to: dir.appendingPathComponent(name))
        }
        for (name, text) in files {
            try Data(text.utf8).write(to: dir.appendingPathComponent(name))
        }
        return dir
    }

    /// A minimal valid model document as text; `extra` members are appended to the top level.
    static func minimalModel(id: String = "gadget", version: Int = 1, telemetry: String? = nil, extra: String = "") -> String {
        let t = telemetry ?? #"{"level": {"type": "number", "unit": "m", "minimum": 0, "maximum": 10, "required": true}}"#
        return #"{"id": "\#(id)", "version": \#(version), "reportingIntervalMs": 1000, "telemetry": \#(t)\#(extra.isEmpty ? "" : ", " + extra)}"#
    }
}
