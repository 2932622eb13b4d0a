import XCTest
@testable import Query

final class QueryPlaceholderTests: XCTestCase {}
