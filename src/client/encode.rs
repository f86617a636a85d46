//! Bytes to and from the wire: percent-encoding keys for URLs, and decoding list items whose
//! key and value are UTF-8 strings or base64 with `"encoding":"base64"` (API.md §3).

use base64::Engine;
use bytes::Bytes;
use serde_json::Value;

use super::ListItem;

/// Percent-encode `bytes` for a URL path or query value: unreserved characters and `/` pass,
/// everything else (including `%`, `+`, `?`, `&`, spaces and non-ASCII) becomes `%XX`.
pub fn encode_path(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One `items[]` entry of `GET /v1/kv`, decoded; `None` if malformed.
pub fn list_item(item: &Value) -> Option<ListItem> {
    let base64 = item["encoding"].as_str() == Some("base64");
    let field = |name: &str| -> Option<Bytes> {
        let text = item[name].as_str()?;
        if base64 {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .ok()
                .map(Bytes::from)
        } else {
            Some(Bytes::copy_from_slice(text.as_bytes()))
        }
    };
    Some(ListItem {
        key: field("key")?,
        value: field("value")?,
        revision: item["revision"].as_u64()?,
        create_revision: item["create_revision"].as_u64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip_through_the_servers_decoder() {
        let key = b"a/b c+d%e?f&\xff";
        let encoded = encode_path(key);
        assert_eq!(encoded, "a/b%20c%2Bd%25e%3Ff%26%FF");
    }

    #[test]
    fn list_items_decode_base64() {
        let j = serde_json::json!({"key":"cC//","value":"AAE=","encoding":"base64",
            "revision":3,"create_revision":2});
        let item = list_item(&j).unwrap();
        assert_eq!(
            (item.key.as_ref(), item.value.as_ref()),
            (&b"p/\xff"[..], &b"\x00\x01"[..])
        );
    }
}
