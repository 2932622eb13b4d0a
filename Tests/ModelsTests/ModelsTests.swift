import XCTest
@testable import Models

final class ModelsPlaceholderTests: XCTestCase {}
