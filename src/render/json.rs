//! JSON output (webdis's shapes, jansson's escaping, the fixes of spec §14.2).

use super::Shape;

/// Appends `{"<name>":VALUE}` for one complete RESP frame.
pub fn render(out: &mut Vec<u8>, name: &[u8], frame: &[u8], shape: Shape) {
    let _ = (out, name, frame, shape);
    todo!()
}

/// Appends `bytes` as a JSON string literal (quotes included).
pub fn write_string(out: &mut Vec<u8>, bytes: &[u8]) {
    let _ = (out, bytes);
    todo!()
}
