import JSONSchema
import XCTest

/// Base-URI resolution decides which schema a `$ref` lands on; RFC 3986 section 5.4 is the oracle.
final class URIReferenceTests: XCTestCase {
    func testRFC3986Examples() {
        let base = URIReference("http://a/b/c/d;p?q")
        let cases: [(String, String)] = [
            ("g:h", "g:h"), ("g", "http://a/b/c/g"), ("./g", "http://a/b/c/g"), ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"), ("//g", "http://g"), ("?y", "http://a/b/c/d;p?y"), ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q#s"), ("g#s", "http://a/b/c/g#s"), (";x", "http://a/b/c/;x"),
            ("", "http://a/b/c/d;p?q"), (".", "http://a/b/c/"), ("./", "http://a/b/c/"), ("..", "http://a/b/"),
            ("../g", "http://a/b/g"), ("../..", "http://a/"), ("../../g", "http://a/g"), ("../../../g", "http://a/g"),
            ("/./g", "http://a/g"), ("/../g", "http://a/g"), ("g.", "http://a/b/c/g."), (".g", "http://a/b/c/.g"),
            ("./../g", "http://a/b/g"), ("g/./h", "http://a/b/c/g/h"), ("g/../h", "http://a/b/c/h"),
        ]
        for (reference, expected) in cases {
            XCTAssertEqual(URIReference(reference).resolved(against: base).description, expected, reference)
        }
    }

    func testURNAndFragments() {
        let urn = URIReference("urn:example:foo-bar-baz-qux?+CCResolve:cc=uk")
        XCTAssertEqual(URIReference("#/$defs/bar").resolved(against: urn).description, "urn:example:foo-bar-baz-qux?+CCResolve:cc=uk#/$defs/bar")
        XCTAssertEqual(URIReference("http://x/y#frag").withoutFragment.description, "http://x/y")
        XCTAssertEqual(URIReference("file:///folder/file.json").authority, "")
    }
}
