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

/// One value and, for aggregates, its children. `depth` bounds the recursion as in JSON
/// (only a frame the scanner did not validate can go deeper; it gives `<nil/>`).
fn value(out: &mut Vec<u8>, r: &mut Reader<'_>, item: Item<'_>, depth: usize) {
    match item {
        Item::Simple(s) => element(out, "status", s),
        Item::Error(s) | Item::BulkError(s) => element(out, "error", s),
        Item::Bulk(s) | Item::Verbatim(s) => element(out, "string", s),
        Item::Int(i) => element(out, "integer", itoa::Buffer::new().format(i).as_bytes()),
        Item::Double(d) => element(out, "double", d),
        Item::BigNum(n) => element(out, "bignum", n),
        Item::Bool(b) => element(out, "boolean", if b { b"true" } else { b"false" }),
        Item::Nil => out.extend_from_slice(b"<nil/>"),
        Item::Array(_) | Item::Set(_) | Item::Push(_) | Item::Map(_) if depth > MAX_DEPTH => {
            skip_children(r, item);
            out.extend_from_slice(b"<nil/>");
        }
        Item::Array(_) | Item::Set(_) | Item::Push(_) | Item::Map(_) => {
            let tag = match item {
                Item::Array(_) => "array",
                Item::Set(_) => "set",
                Item::Push(_) => "push",
                _ => "map",
            };
            open_tag(out, tag);
            for _ in 0..item.children() {
                let Some(child) = r.next() else { break };
                value(out, r, child, depth + 1);
            }
            close_tag(out, tag);
        }
    }
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
    }
}
