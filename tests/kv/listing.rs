//! Prefix listing: byte order, paging with `start_after`, `more` exactly when items remain.

use bytes::Bytes;
use rocinante::kv::Store;
use rocinante::kv::command::Op;

use crate::*;

fn keys_of(page: &rocinante::node::handle::ListPage) -> Vec<String> {
    page.items
        .iter()
        .map(|kv| String::from_utf8(kv.key.to_vec()).unwrap())
        .collect()
}

#[test]
fn list_pages_by_prefix_in_byte_order() {
    let mut s = Store::default();
    for (i, k) in ["b/2", "a", "b/1", "b/3", "b0", "c", "b/10"]
        .iter()
        .enumerate()
    {
        outcome(&mut s, i as u64 + 1, put_op(k, "v", None));
    }
    let p = s.list(b"b/", None, 2);
    assert_eq!(keys_of(&p), ["b/1", "b/10"]);
    assert!(p.more);
    let p = s.list(b"b/", Some(b"b/10"), 2);
    assert_eq!(keys_of(&p), ["b/2", "b/3"]);
    assert!(
        !p.more,
        "more is false when exactly the last items were returned"
    );
    let p = s.list(b"b/", Some(b"b/3"), 2);
    assert!(p.items.is_empty() && !p.more);
    // start_after before the prefix starts at the prefix.
    assert_eq!(
        keys_of(&s.list(b"b/", Some(b"a"), 10)),
        ["b/1", "b/10", "b/2", "b/3"]
    );
    assert_eq!(keys_of(&s.list(b"", None, 100)).len(), 7);
    let p = s.list(b"b", None, 0);
    assert!(p.items.is_empty() && p.more);
    assert!(!s.list(b"zz", None, 0).more);
    assert_eq!(p.revision, 7);
}

#[test]
fn list_handles_binary_keys_with_ff_bytes() {
    let mut s = Store::default();
    for (i, k) in [vec![0xff], vec![0xff, 0xff], vec![0xff, 0x00], vec![0xfe]]
        .into_iter()
        .enumerate()
    {
        let op = Op::Put {
            key: Bytes::from(k),
            value: b("v"),
            if_revision: None,
        };
        outcome(&mut s, i as u64 + 1, op);
    }
    let page = s.list(&[0xff], None, 10);
    let keys: Vec<Vec<u8>> = page.items.iter().map(|kv| kv.key.to_vec()).collect();
    assert_eq!(keys, vec![vec![0xff], vec![0xff, 0x00], vec![0xff, 0xff]]);
}
