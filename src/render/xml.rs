//! mod_redis's XML document (rewrite rules' `"format": "xml"`, `.xml`, or
//! `Accept: application/xml`), streamed from the reply like JSON.
//!
//! `<?xml version="1.0" encoding="UTF-8"?>`, then `<response>` holding one element per
//! RESP value, nested as the reply is: `<status>`, `<string>`, `<error>`, `<integer>`,
//! `<nil/>`, `<array>`. RESP3 adds `<map>` (keys and values alternate, as RESP2 sends
//! them), `<set>`, `<push>`, `<double>`, `<boolean>` and `<bignum>`; a verbatim string is
//! a `<string>` of its text and a bulk error an `<error>`.
//!
//! Text is escaped for XML 1.0: `&`, `<` and `>` as entities, CR as `&#13;` (a parser
//! would turn a raw CR into LF). Bytes that cannot be XML 1.0 characters at all (control
//! characters other than tab, LF and CR; invalid UTF-8; U+FFFE and U+FFFF) are each
//! replaced by U+FFFD, never written raw: XML has no way to carry them, even as
//! character references. `.raw` gives exact bytes.
//!
//! [`render_json`] writes the same document as JSON, for the mod_redis dialect of rewrite
//! rules (`.json`, `.jsonp`): each element is an object whose one key is the element's
//! name, `{"status":"PONG"}`, `{"integer":3}`, `{"nil":null}`, `{"array":[...]}` (a list
//! of elements), and the `<response>` wrapper is left out. Values are JSON's own types
//! where they fit (integers, booleans, `null` for nil, doubles that are JSON numbers) and
//! strings otherwise (a double `inf`, a big number), as in the JSON renderer, whose
//! string escaping applies (NUL as `\u0000`, invalid UTF-8 as U+FFFD).

use super::json::{write_double, write_string};
use super::skip_children;
use crate::proto::resp::{Item, Reader, MAX_DEPTH};

const PROLOG: &[u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<response>";
const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

/// Appends the XML document for one complete RESP frame.
pub fn render(out: &mut Vec<u8>, frame: &[u8]) {
    out.reserve(frame.len() + PROLOG.len() + 32);
    out.extend_from_slice(PROLOG);
    let mut r = Reader::new(frame);
    match r.next() {
        Some(item) => value(out, &mut r, item, 0),
        None => out.extend_from_slice(b"<nil/>"),
    }
    out.extend_from_slice(b"</response>\n");
}

/// Appends the JSON form of the XML document for one complete RESP frame (see the module
/// comment), e.g. `{"status":"PONG"}`.
pub fn render_json(out: &mut Vec<u8>, frame: &[u8]) {
    out.reserve(frame.len() + 16);
    let mut r = Reader::new(frame);
    match r.next() {
        Some(item) => json_value(out, &mut r, item, 0),
        None => out.extend_from_slice(br#"{"nil":null}"#),
    }
}

/// The element name of a value, in both forms.
fn tag(item: &Item<'_>) -> &'static str {
    match item {
        Item::Simple(_) => "status",
        Item::Error(_) | Item::BulkError(_) => "error",
        Item::Bulk(_) | Item::Verbatim(_) => "string",
        Item::Int(_) => "integer",
        Item::Double(_) => "double",
        Item::BigNum(_) => "bignum",
        Item::Bool(_) => "boolean",
        Item::Nil => "nil",
        Item::Array(_) => "array",
        Item::Set(_) => "set",
        Item::Push(_) => "push",
        Item::Map(_) => "map",
    }
}

/// Whether `item` is an aggregate nested deeper than [`MAX_DEPTH`], which only a frame
/// the scanner did not validate can hold: its children are then skipped, and it is
/// written as nil, so the recursion stays bounded (as in JSON).
fn too_deep(r: &mut Reader<'_>, item: Item<'_>, depth: usize) -> bool {
    let deep = depth > MAX_DEPTH
        && matches!(
            item,
            Item::Array(_) | Item::Set(_) | Item::Push(_) | Item::Map(_)
        );
    if deep {
        skip_children(r, item);
    }
    deep
}

/// One value and, for aggregates, its children.
fn value(out: &mut Vec<u8>, r: &mut Reader<'_>, item: Item<'_>, depth: usize) {
    if too_deep(r, item, depth) {
        return out.extend_from_slice(b"<nil/>");
    }
    let tag = tag(&item);
    match item {
        Item::Simple(s)
        | Item::Error(s)
        | Item::BulkError(s)
        | Item::Bulk(s)
        | Item::Verbatim(s)
        | Item::Double(s)
        | Item::BigNum(s) => element(out, tag, s),
        Item::Int(i) => element(out, tag, itoa::Buffer::new().format(i).as_bytes()),
        Item::Bool(b) => element(out, tag, if b { b"true" } else { b"false" }),
        Item::Nil => out.extend_from_slice(b"<nil/>"),
        Item::Array(_) | Item::Set(_) | Item::Push(_) | Item::Map(_) => {
            open_tag(out, tag);
            for _ in 0..item.children() {
                let Some(child) = r.next() else { break };
                value(out, r, child, depth + 1);
            }
            close_tag(out, tag);
        }
    }
}

/// [`value`]'s JSON form: `{"<tag>":VALUE}`, an aggregate's VALUE the list of its
/// children's forms (a map's keys and values alternate, as in XML).
fn json_value(out: &mut Vec<u8>, r: &mut Reader<'_>, item: Item<'_>, depth: usize) {
    if too_deep(r, item, depth) {
        return out.extend_from_slice(br#"{"nil":null}"#);
    }
    out.extend_from_slice(b"{\"");
    out.extend_from_slice(tag(&item).as_bytes());
    out.extend_from_slice(b"\":");
    match item {
        Item::Simple(s)
        | Item::Error(s)
        | Item::BulkError(s)
        | Item::Bulk(s)
        | Item::Verbatim(s)
        | Item::BigNum(s) => write_string(out, s),
        Item::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
        Item::Double(d) => write_double(out, d),
        Item::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Item::Nil => out.extend_from_slice(b"null"),
        Item::Array(_) | Item::Set(_) | Item::Push(_) | Item::Map(_) => {
            out.push(b'[');
            for i in 0..item.children() {
                let Some(child) = r.next() else { break };
                if i > 0 {
                    out.push(b',');
                }
                json_value(out, r, child, depth + 1);
            }
            out.push(b']');
        }
    }
    out.push(b'}');
}

fn open_tag(out: &mut Vec<u8>, tag: &str) {
    out.push(b'<');
    out.extend_from_slice(tag.as_bytes());
    out.push(b'>');
}

fn close_tag(out: &mut Vec<u8>, tag: &str) {
    out.extend_from_slice(b"</");
    out.extend_from_slice(tag.as_bytes());
    out.push(b'>');
}

fn element(out: &mut Vec<u8>, tag: &str, text: &[u8]) {
    open_tag(out, tag);
    write_text(out, text);
    close_tag(out, tag);
}

/// Appends `bytes` as XML character data (see the module comment).
pub fn write_text(out: &mut Vec<u8>, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        let s = chunk.valid().as_bytes();
        let mut start = 0;
        let mut i = 0;
        while i < s.len() {
            let b = s[i];
            let (len, with): (usize, &[u8]) = match b {
                b'&' => (1, b"&amp;"),
                b'<' => (1, b"&lt;"),
                b'>' => (1, b"&gt;"),
                b'\r' => (1, b"&#13;"),
                b'\t' | b'\n' => {
                    i += 1;
                    continue;
                }
                0..=0x1f => (1, REPLACEMENT),
                // U+FFFE and U+FFFF (EF BF BE, EF BF BF): not XML characters.
                0xef if s.get(i + 1) == Some(&0xbf)
                    && matches!(s.get(i + 2), Some(0xbe | 0xbf)) =>
                {
                    (3, REPLACEMENT)
                }
                _ => {
                    i += 1;
                    continue;
                }
            };
            out.extend_from_slice(&s[start..i]);
            out.extend_from_slice(with);
            i += len;
            start = i;
        }
        out.extend_from_slice(&s[start..]);
        if !chunk.invalid().is_empty() {
            out.extend_from_slice(REPLACEMENT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xml(frame: &[u8]) -> String {
        let mut out = Vec::new();
        render(&mut out, frame);
        let s = String::from_utf8(out).expect("XML output is UTF-8");
        let body = s
            .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<response>")
            .and_then(|s| s.strip_suffix("</response>\n"))
            .unwrap_or_else(|| panic!("not a document: {s:?}"));
        body.to_string()
    }

    #[test]
    fn every_type() {
        let cases: &[(&[u8], &str)] = &[
            (b"+PONG\r\n", "<status>PONG</status>"),
            (b"-ERR no\r\n", "<error>ERR no</error>"),
            (b":-42\r\n", "<integer>-42</integer>"),
            (
                b":9223372036854775807\r\n",
                "<integer>9223372036854775807</integer>",
            ),
            (b"$5\r\nworld\r\n", "<string>world</string>"),
            (b"$0\r\n\r\n", "<string></string>"),
            (b"$-1\r\n", "<nil/>"),
            (b"*-1\r\n", "<nil/>"),
            (b"*0\r\n", "<array></array>"),
            (
                b"*3\r\n$1\r\na\r\n:1\r\n*2\r\n$-1\r\n+OK\r\n",
                "<array><string>a</string><integer>1</integer><array><nil/><status>OK</status></array></array>",
            ),
            (b"_\r\n", "<nil/>"),
            (b",1.5\r\n", "<double>1.5</double>"),
            (b",inf\r\n", "<double>inf</double>"),
            (b"#t\r\n", "<boolean>true</boolean>"),
            (b"(123456789012345678901234567890\r\n", "<bignum>123456789012345678901234567890</bignum>"),
            (b"=9\r\ntxt:hello\r\n", "<string>hello</string>"),
            (b"!5\r\nERR x\r\n", "<error>ERR x</error>"),
            (
                b"%1\r\n+a\r\n:1\r\n",
                "<map><status>a</status><integer>1</integer></map>",
            ),
            (b"~1\r\n$1\r\nx\r\n", "<set><string>x</string></set>"),
            (b">1\r\n$1\r\nm\r\n", "<push><string>m</string></push>"),
            (b"|1\r\n+k\r\n+v\r\n:7\r\n", "<integer>7</integer>"),
            (b"", "<nil/>"),
        ];
        for (frame, want) in cases {
            assert_eq!(xml(frame), *want, "{}", frame.escape_ascii());
        }
    }

    fn json(frame: &[u8]) -> String {
        let mut out = Vec::new();
        render_json(&mut out, frame);
        String::from_utf8(out).expect("JSON output is UTF-8")
    }

    #[test]
    fn json_form_of_every_type() {
        let cases: &[(&[u8], &str)] = &[
            (b"+PONG\r\n", r#"{"status":"PONG"}"#),
            (b"-ERR no\r\n", r#"{"error":"ERR no"}"#),
            (b":-42\r\n", r#"{"integer":-42}"#),
            (
                b":9223372036854775807\r\n",
                r#"{"integer":9223372036854775807}"#,
            ),
            (b"$5\r\nworld\r\n", r#"{"string":"world"}"#),
            (b"$0\r\n\r\n", r#"{"string":""}"#),
            (b"$-1\r\n", r#"{"nil":null}"#),
            (b"*-1\r\n", r#"{"nil":null}"#),
            (b"*0\r\n", r#"{"array":[]}"#),
            (
                b"*3\r\n$1\r\na\r\n:1\r\n*2\r\n$-1\r\n+OK\r\n",
                r#"{"array":[{"string":"a"},{"integer":1},{"array":[{"nil":null},{"status":"OK"}]}]}"#,
            ),
            (b"_\r\n", r#"{"nil":null}"#),
            (b",1.5\r\n", r#"{"double":1.5}"#),
            (b",-2e-5\r\n", r#"{"double":-2e-5}"#),
            (b",inf\r\n", r#"{"double":"inf"}"#),
            (b",nan\r\n", r#"{"double":"nan"}"#),
            (b"#t\r\n", r#"{"boolean":true}"#),
            (b"#f\r\n", r#"{"boolean":false}"#),
            (
                b"(123456789012345678901234567890\r\n",
                r#"{"bignum":"123456789012345678901234567890"}"#,
            ),
            (b"=9\r\ntxt:hello\r\n", r#"{"string":"hello"}"#),
            (b"!5\r\nERR x\r\n", r#"{"error":"ERR x"}"#),
            (
                b"%2\r\n+a\r\n:1\r\n$1\r\nb\r\n*1\r\n#f\r\n",
                r#"{"map":[{"status":"a"},{"integer":1},{"string":"b"},{"array":[{"boolean":false}]}]}"#,
            ),
            (b"%0\r\n", r#"{"map":[]}"#),
            (b"~1\r\n$1\r\nx\r\n", r#"{"set":[{"string":"x"}]}"#),
            (b">1\r\n$1\r\nm\r\n", r#"{"push":[{"string":"m"}]}"#),
            (b"|1\r\n+k\r\n+v\r\n:7\r\n", r#"{"integer":7}"#),
            (b"", r#"{"nil":null}"#),
        ];
        for (frame, want) in cases {
            assert_eq!(json(frame), *want, "{}", frame.escape_ascii());
            // Every output is valid JSON.
            let v: serde_json::Value = serde_json::from_str(&json(frame)).unwrap();
            assert!(v.is_object(), "{v}");
        }
    }

    #[test]
    fn json_form_escapes_strings() {
        let cases: &[(&[u8], &str)] = &[
            (b"$8\r\na\"b\\c</d\r\n", r#"{"string":"a\"b\\c</d"}"#),
            (
                b"$5\r\n\0\r\n\t\x01\r\n",
                r#"{"string":"\u0000\r\n\t\u0001"}"#,
            ),
            (
                b"$4\r\nx\xff\xfey\r\n",
                "{\"string\":\"x\u{FFFD}\u{FFFD}y\"}",
            ),
            ("+café\r\n".as_bytes(), r#"{"status":"café"}"#),
            (b"-ERR <&>\r\n", r#"{"error":"ERR <&>"}"#),
        ];
        for (frame, want) in cases {
            assert_eq!(json(frame), *want, "{}", frame.escape_ascii());
        }
    }

    #[test]
    fn escaping() {
        let cases: &[(&[u8], &str)] = &[
            (b"a<b>&c\"d'", "a&lt;b&gt;&amp;c\"d'"),
            (b"]]>", "]]&gt;"),
            (b"tab\tlf\ncr\r", "tab\tlf\ncr&#13;"),
            (b"nul\0x\x01\x1f", "nul\u{FFFD}x\u{FFFD}\u{FFFD}"),
            ("café €".as_bytes(), "café €"),
            (b"bad\xff\xfe!", "bad\u{FFFD}\u{FFFD}!"),
            (b"\xe2\x82", "\u{FFFD}"),
            (
                "\u{FFFE}\u{FFFF}\u{FFFD}".as_bytes(),
                "\u{FFFD}\u{FFFD}\u{FFFD}",
            ),
            (
                "\u{10FFFF}\u{7f}\u{85}".as_bytes(),
                "\u{10FFFF}\u{7f}\u{85}",
            ),
        ];
        for (input, want) in cases {
            let mut out = Vec::new();
            write_text(&mut out, input);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                *want,
                "{}",
                input.escape_ascii()
            );
        }
    }

    #[test]
    fn deep_frames_stay_bounded() {
        // 100 nested arrays (deeper than a validated frame can be): no stack overflow.
        let mut frame = b"*1\r\n".repeat(100);
        frame.extend_from_slice(b":1\r\n");
        let s = xml(&frame);
        assert!(s.starts_with("<array><array>"), "{s}");
        assert!(s.contains("<nil/>"), "{s}");
        let j = json(&frame);
        assert!(j.starts_with(r#"{"array":[{"array":["#), "{j}");
        assert!(j.contains(r#"{"nil":null}"#), "{j}");
        // Balanced (too deep for serde_json's own recursion limit to parse).
        let count = |c| j.matches(c).count();
        assert_eq!((count('{'), count('[')), (count('}'), count(']')), "{j}");
    }
}
