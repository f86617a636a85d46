//! The REST contract (API.md §3) against a real `rocinante serve` process: one test per row's
//! status codes and headers, and a table of malformed requests each answered with its
//! documented 4xx while the node keeps serving. Forwarding between nodes is in cluster.rs.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Answer, Cluster, get, put, raw, request};

/// A one-node cluster that has elected itself.
fn node() -> (Cluster, String) {
    let c = Cluster::start(1);
    c.wait_leader(Duration::from_secs(10));
    let addr = c.rest[0].clone();
    (c, addr)
}

fn assert_kv_headers(a: &Answer, what: &str) {
    for h in ["x-node-id", "x-leader-id", "x-raft-term", "x-raft-index"] {
        assert!(a.header(h).is_some(), "{what}: missing {h} in\n{}", a.head);
    }
    let id = a.header("x-node-id").unwrap_or_default();
    assert!(
        id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{what}: {id}"
    );
}

fn assert_error(a: &Answer, status: u16, code: &str, what: &str) {
    assert_eq!(a.status, status, "{what}: {}{}", a.head, a.text());
    assert_eq!(
        a.error_code().as_deref(),
        Some(code),
        "{what}: {}",
        a.text()
    );
    assert!(a.json()["message"].is_string(), "{what}: no message");
}

#[test]
fn put_answers_revision_and_prev_revision() {
    let (_c, n) = node();
    let a = put(&n, "/v1/kv/greeting", b"hello");
    assert_eq!(a.status, 200, "{}", a.text());
    assert_kv_headers(&a, "put");
    let r1 = a.json()["revision"].as_u64().expect("revision");
    assert_eq!(a.json()["prev_revision"], serde_json::Value::Null);
    let b = put(&n, "/v1/kv/greeting", b"again").json();
    assert!(b["revision"].as_u64().expect("revision") > r1);
    assert_eq!(b["prev_revision"], json!(r1));
}

#[test]
fn put_if_revision_is_compare_and_set_with_the_winner_in_the_409() {
    let (_c, n) = node();
    let won = put(&n, "/v1/kv/lock?if_revision=0", b"alice");
    assert_eq!(won.status, 200);
    let rev = won.json()["revision"].as_u64().expect("revision");
    let lost = put(&n, "/v1/kv/lock?if_revision=0", b"bob");
    assert_error(&lost, 409, "revision_mismatch", "second put-if-absent");
    assert_kv_headers(&lost, "409");
    assert_eq!(lost.json()["current_revision"], json!(rev));
    assert_eq!(lost.json()["current_value"], "alice");
    let ok = put(&n, &format!("/v1/kv/lock?if_revision={rev}"), b"carol");
    assert_eq!(ok.status, 200);
    let absent = put(&n, "/v1/kv/nobody?if_revision=7", b"x");
    assert_error(&absent, 409, "revision_mismatch", "cas on an absent key");
    assert_eq!(absent.json()["current_revision"], json!(0));
    assert!(absent.json().get("current_value").is_none());
}

#[test]
fn get_answers_the_value_with_revision_headers() {
    let (_c, n) = node();
    let w = put(&n, "/v1/kv/a%2Fb", b"\x00bin\xff");
    let rev = w.json()["revision"].as_u64().expect("revision");
    for target in [
        "/v1/kv/a/b",
        "/v1/kv/a%2Fb",
        "/v1/kv/a/b?consistency=lease",
        "/v1/kv/a/b?consistency=stale",
    ] {
        let a = get(&n, target);
        assert_eq!(
            (a.status, a.body.as_slice()),
            (200, &b"\x00bin\xff"[..]),
            "{target}"
        );
        assert_kv_headers(&a, target);
        assert_eq!(a.header("x-revision"), Some(rev.to_string()));
        assert_eq!(a.header("x-create-revision"), Some(rev.to_string()));
    }
    let missing = get(&n, "/v1/kv/missing");
    assert_error(&missing, 404, "not_found", "absent key");
    assert_kv_headers(&missing, "404");
}

#[test]
fn delete_answers_revision_and_whether_it_existed() {
    let (_c, n) = node();
    put(&n, "/v1/kv/d", b"x");
    let a = request(&n, "DELETE", "/v1/kv/d", "", b"");
    assert_eq!(a.status, 200);
    assert_kv_headers(&a, "delete");
    assert_eq!(a.json()["deleted"], true);
    let again = request(&n, "DELETE", "/v1/kv/d", "", b"").json();
    assert_eq!(again["deleted"], false);
    assert!(again["revision"].as_u64() > a.json()["revision"].as_u64());
    assert_eq!(get(&n, "/v1/kv/d").status, 404);
    let cas = request(&n, "DELETE", "/v1/kv/d?if_revision=1", "", b"");
    assert_error(&cas, 409, "revision_mismatch", "delete cas");
}

#[test]
fn list_pages_by_prefix_and_encodes_binary_as_base64() {
    let (_c, n) = node();
    for k in ["p/1", "p/2", "p/3", "q/1"] {
        assert_eq!(put(&n, &format!("/v1/kv/{k}"), k.as_bytes()).status, 200);
    }
    put(&n, "/v1/kv/p/%FF", b"\x01");
    let page = get(&n, "/v1/kv?prefix=p/&limit=2");
    assert_eq!(page.status, 200);
    assert_kv_headers(&page, "list");
    let j = page.json();
    let keys: Vec<&str> = j["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["key"].as_str())
        .collect();
    assert_eq!(
        (keys, j["more"].as_bool()),
        (vec!["p/1", "p/2"], Some(true))
    );
    assert!(j["items"][0]["revision"].is_u64() && j["items"][0]["create_revision"].is_u64());
    let rest = get(&n, "/v1/kv?prefix=p/&start_after=p/2").json();
    let items = rest["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert_eq!(rest["more"], false);
    assert_eq!(
        (items[1]["key"].as_str(), items[1]["encoding"].as_str()),
        (Some("cC//"), Some("base64"))
    );
    assert_eq!(items[1]["value"], "AQ==");
}

#[test]
fn status_leader_health_ready_metrics_and_dashboard() {
    let (_c, n) = node();
    let s = get(&n, "/v1/status");
    assert_eq!(s.status, 200);
    let j = s.json();
    for f in [
        "id",
        "name",
        "role",
        "term",
        "leader",
        "commit_index",
        "applied_index",
        "last_log_index",
        "snapshot_index",
        "members",
    ] {
        assert!(j.get(f).is_some(), "status lacks {f}: {j}");
    }
    assert_eq!(j["role"], "leader");
    assert_eq!(j["members"][0]["rest"], n.as_str());
    let l = get(&n, "/v1/leader");
    assert_eq!(
        (l.status, l.json()["rest"].as_str()),
        (200, Some(n.as_str()))
    );
    assert_eq!(l.json()["id"], j["id"]);
    assert_eq!(get(&n, "/health").status, 200);
    assert!(
        support::poll(Duration::from_secs(5), || (get(&n, "/ready").status == 200)
            .then_some(()))
        .is_some()
    );
    put(&n, "/v1/kv/m", b"1");
    let m = get(&n, "/metrics");
    assert_eq!(m.status, 200);
    assert!(
        m.text()
            .contains("rocinante_api_requests_total{route=\"kv_put\",code=\"200\"}"),
        "{}",
        m.text()
    );
    assert!(m.text().contains("rocinante_raft_term"));
    let d = get(&n, "/");
    assert_eq!(d.status, 200);
    assert!(
        d.header("content-type")
            .unwrap_or_default()
            .starts_with("text/html")
    );
}

#[test]
fn idempotency_key_replays_the_first_answer_and_refuses_reuse() {
    let (_c, n) = node();
    let h = "Idempotency-Key: order-42\r\n";
    let first = request(&n, "PUT", "/v1/kv/order", h, b"paid");
    assert_eq!(first.status, 200);
    assert!(first.header("idempotent-replayed").is_none());
    let retry = request(&n, "PUT", "/v1/kv/order", h, b"paid");
    assert_eq!((retry.status, retry.json()), (200, first.json()));
    assert_eq!(retry.header("idempotent-replayed").as_deref(), Some("true"));
    let other = request(&n, "PUT", "/v1/kv/order", h, b"refunded");
    assert_error(
        &other,
        422,
        "idempotency_key_reused",
        "same key, other body",
    );
    assert_eq!(get(&n, "/v1/kv/order").body, b"paid");
    let long = format!("Idempotency-Key: {}\r\n", "k".repeat(129));
    assert_error(
        &request(&n, "PUT", "/v1/kv/order", &long, b"x"),
        400,
        "bad_request",
        "129-byte key",
    );
    assert_error(
        &request(&n, "PUT", "/v1/kv/order", "Idempotency-Key: \r\n", b"x"),
        400,
        "bad_request",
        "empty key",
    );
}

#[test]
fn later_issue_routes_answer_501() {
    let (_c, n) = node();
    for (method, target) in [
        ("POST", "/v1/txn"),
        ("GET", "/v1/watch?prefix=a"),
        ("POST", "/v1/flows/lb"),
    ] {
        let a = request(&n, method, target, "", b"{}");
        assert_error(&a, 501, "not_implemented", target);
    }
}

#[test]
fn membership_rows_check_their_input() {
    let (_c, n) = node();
    let bad_bodies: [&[u8]; 3] = [
        b"{}",
        br#"{"address":"127.0.0.1","port":0,"rest":1}"#,
        br#"{"address":"127.0.0.1","port":1,"rest":2,"voter":"yes"}"#,
    ];
    for body in bad_bodies {
        let a = request(&n, "POST", "/v1/members", "", body);
        assert_error(&a, 400, "bad_request", "POST /v1/members");
    }
    let a = request(&n, "DELETE", "/v1/members/00000000000000ab", "", b"");
    assert_error(&a, 404, "not_found", "DELETE an unknown member");
    let a = request(&n, "DELETE", "/v1/members/xyz", "", b"");
    assert_error(&a, 400, "bad_request", "DELETE a malformed id");
    let a = request(
        &n,
        "POST",
        "/v1/leader/transfer?to=00000000000000ab",
        "",
        b"",
    );
    assert_error(&a, 409, "not_caught_up", "transfer to a non-voter");
    let a = request(&n, "POST", "/v1/leader/transfer", "", b"");
    assert_error(&a, 400, "bad_request", "transfer without ?to");
    let a = request(&n, "GET", "/v1/members", "", b"");
    assert_error(&a, 405, "method_not_allowed", "GET /v1/members");
}

#[test]
fn malformed_requests_get_their_4xx_and_the_node_keeps_serving() {
    let (_c, n) = node();
    let key_5k = format!("/v1/kv/{}", "k".repeat(5 * 1024));
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        (
            "bad percent-encoding",
            "GET",
            "/v1/kv/a%zzb".into(),
            400,
            "bad_request",
        ),
        (
            "truncated escape",
            "PUT",
            "/v1/kv/a%4".into(),
            400,
            "bad_request",
        ),
        ("empty key", "GET", "/v1/kv/".into(), 400, "bad_request"),
        ("5 KiB key", "PUT", key_5k, 400, "key_too_long"),
        (
            "negative number",
            "PUT",
            "/v1/kv/a?if_revision=-1".into(),
            400,
            "bad_request",
        ),
        (
            "non-numeric",
            "GET",
            "/v1/kv?limit=ten".into(),
            400,
            "bad_request",
        ),
        (
            ">u64",
            "DELETE",
            "/v1/kv/a?if_revision=99999999999999999999".into(),
            400,
            "bad_request",
        ),
        ("ttl=0", "PUT", "/v1/kv/a?ttl=0".into(), 400, "bad_request"),
        (
            "unknown consistency",
            "GET",
            "/v1/kv/a?consistency=eventual".into(),
            400,
            "bad_request",
        ),
        (
            "limit 0",
            "GET",
            "/v1/kv?limit=0".into(),
            400,
            "bad_request",
        ),
        (
            "wrong method on key",
            "POST",
            "/v1/kv/a".into(),
            405,
            "method_not_allowed",
        ),
        (
            "wrong method on status",
            "DELETE",
            "/v1/status".into(),
            405,
            "method_not_allowed",
        ),
        ("unknown path", "GET", "/v2/kv/a".into(), 404, "not_found"),
        ("unknown path 2", "GET", "/v1/kvx".into(), 404, "not_found"),
    ];
    for (what, method, target, status, code) in cases {
        let a = request(&n, method, &target, "", b"");
        assert_error(&a, status, code, what);
        if target.starts_with("/v1/kv") && status != 404 {
            assert_kv_headers(&a, what);
        }
        assert_eq!(get(&n, "/health").status, 200, "after {what}");
    }
    let a = request(&n, "PATCH", "/v1/kv/a", "", b"");
    assert_eq!(a.header("allow").as_deref(), Some("GET, PUT, DELETE"));

    let big = put(&n, "/v1/kv/big", &vec![b'v'; 2 * 1024 * 1024]);
    assert_error(&big, 413, "value_too_large", "2 MiB body");
    assert_eq!(get(&n, "/v1/kv/big").status, 404);

    let truncated = b"PUT /v1/kv/t HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-part";
    let t = raw_half_closed(&n, truncated);
    assert!(
        t.status == 0 || t.status == 400,
        "truncated body: {}",
        t.status
    );
    assert_eq!(get(&n, "/v1/kv/t").status, 404);

    let huge = format!("X-Filler: {}\r\n", "h".repeat(200 * 1024));
    let h = request(&n, "GET", "/health", &huge, b"");
    assert!(
        h.status == 431 || h.status == 0,
        "oversized header: {}",
        h.status
    );
    let long_uri = format!("/v1/kv/{}", "u".repeat(70 * 1024));
    let u = get(&n, &long_uri);
    assert!(
        matches!(u.status, 0 | 400 | 414 | 431),
        "oversized request line: {}",
        u.status
    );
    let garbage = raw(
        &n,
        b"\x16\x03\x01 not http at all\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(garbage.status == 0 || (400..500).contains(&garbage.status));

    assert_eq!(put(&n, "/v1/kv/still", b"serving").status, 200);
    assert_eq!(get(&n, "/v1/kv/still").body, b"serving");
}

#[test]
fn a_slow_client_does_not_block_others() {
    let (_c, n) = node();
    // Half a request head, then silence: the node must keep answering everyone else.
    let mut slow = std::net::TcpStream::connect(&n).expect("connect");
    std::io::Write::write_all(&mut slow, b"PUT /v1/kv/slow HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    for i in 0..5 {
        assert_eq!(put(&n, &format!("/v1/kv/fast{i}"), b"x").status, 200);
    }
    drop(slow);
}

/// Send a request, then close our side (the body ends early), and read what comes back.
fn raw_half_closed(addr: &str, bytes: &[u8]) -> Answer {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return raw(addr, b"", Duration::from_secs(1));
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let head = String::from_utf8_lossy(&out).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        head,
        body: Vec::new(),
    }
}

/// Run the CLI; (exit code, stdout, stderr).
fn cli(args: &[&str], cwd: &std::path::Path) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rocinante"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run rocinante");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[test]
fn cli_client_commands_and_exit_codes() {
    let (c, n) = node();
    let ep = ["--endpoints", n.as_str()];
    let run = |args: &[&str]| cli(&[args, &ep[..]].concat(), &c.dir);
    assert_eq!(run(&["put", "tour/hello", "world"]).0, 0);
    let (code, out, _) = run(&["get", "tour/hello"]);
    assert_eq!((code, out.as_str()), (0, "world\n"));
    let (code, out, _) = run(&["list", "tour/"]);
    assert_eq!((code, out.as_str()), (0, "tour/hello\tworld\n"));
    let (code, _, err) = run(&["get", "tour/missing"]);
    assert_eq!(code, 1, "not found exits 1: {err}");
    let (code, out, _) = run(&["put", "tour/hello", "x", "--if-revision", "0"]);
    assert_eq!(code, 1, "a lost compare-and-set exits 1: {out}");
    let (code, out, _) = run(&["del", "tour/hello"]);
    assert_eq!((code, out.as_str()), (0, "1\n"));
    let (code, out, _) = run(&["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("leader") && out.contains(&n), "{out}");
    let spec = c.spec.to_string_lossy().into_owned();
    let (code, out, _) = cli(&["get", "tour/hello", "--spec", &spec], &c.dir);
    assert_eq!((code, out.as_str()), (1, ""), "deleted, found via --spec");
    assert_eq!(cli(&["get"], &c.dir).0, 2, "missing argument");
    assert_eq!(
        cli(&["get", "k", "--endpoints", "not/an/address"], &c.dir).0,
        2
    );
}

#[test]
fn serve_refuses_a_bad_spec_with_exit_2_and_writes_nothing() {
    let dir = std::env::temp_dir().join(format!("rocinante-badspec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cases = [
        (
            "empty.yaml",
            "artifact:\n  cluster:\n    name: x\n    controllers: []\n",
        ),
        (
            "unknown.yaml",
            "artifact:\n  cluster:\n    name: x\n    bogus: 1\n    controllers:\n      - { address: 127.0.0.1, port: 1, rest: 2 }\n",
        ),
        ("notyaml.yaml", "artifact: [\n"),
    ];
    for (file, text) in cases {
        std::fs::write(dir.join(file), text).expect("write");
        let (code, _, err) = cli(&["serve", "--spec", file], &dir);
        assert_eq!(code, 2, "{file}: {err}");
        assert!(err.contains("spec"), "{file}: {err}");
    }
    let (code, _, _) = cli(&["serve", "--spec", "missing.yaml"], &dir);
    assert_eq!(code, 2);
    assert!(!dir.join("data").exists(), "nothing written for a bad spec");
    let _ = std::fs::remove_dir_all(&dir);
}
