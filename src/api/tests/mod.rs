//! In-process tests of the whole HTTP surface against a fake in-memory node (`fake.rs`):
//! status codes, headers and bodies per API.md §3, malformed input, forwarding and redirects.

mod fake;

use fake::{raw_maybe_close, req, start, start_with};

use crate::api::ApiContext;
#[tokio::test]
async fn put_get_delete_with_headers() {
    let s = start(2, None).await;
    let a = req(&s.addr, "PUT", "/v1/kv/a%2Fb", "", b"v1").await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.json(),
        serde_json::json!({"revision": 1, "prev_revision": null})
    );
    assert_eq!(a.header("x-node-id").as_deref(), Some("0000000000000002"));
    assert_eq!(a.header("x-leader-id").as_deref(), Some("0000000000000001"));
    assert_eq!(a.header("x-raft-term").as_deref(), Some("3"));
    let g = req(&s.addr, "GET", "/v1/kv/a/b", "", b"").await;
    assert_eq!((g.status, g.body.as_slice()), (200, &b"v1"[..]));
    assert_eq!(g.header("x-revision").as_deref(), Some("1"));
    assert_eq!(g.header("x-create-revision").as_deref(), Some("1"));
    assert!(g.header("x-raft-index").is_some());
    let d = req(&s.addr, "DELETE", "/v1/kv/a/b", "", b"").await;
    assert_eq!(
        d.json(),
        serde_json::json!({"revision": 2, "deleted": true})
    );
    let g = req(&s.addr, "GET", "/v1/kv/a/b", "", b"").await;
    assert_eq!(
        (g.status, g.json()["error"].as_str()),
        (404, Some("not_found"))
    );
    assert!(g.header("x-node-id").is_some());
}

#[tokio::test]
async fn compare_and_set_conflict_names_the_winner() {
    let s = start(2, None).await;
    assert_eq!(
        req(&s.addr, "PUT", "/v1/kv/k?if_revision=0", "", b"first")
            .await
            .status,
        200
    );
    let lost = req(&s.addr, "PUT", "/v1/kv/k?if_revision=0", "", b"second").await;
    assert_eq!(lost.status, 409);
    let j = lost.json();
    assert_eq!(
        (j["error"].as_str(), j["current_revision"].as_u64()),
        (Some("revision_mismatch"), Some(1))
    );
    assert_eq!(j["current_value"], "first");
    assert!(j["message"].is_string());
    let lost = req(&s.addr, "DELETE", "/v1/kv/none?if_revision=5", "", b"").await;
    assert_eq!(
        (lost.status, lost.json()["current_revision"].as_u64()),
        (409, Some(0))
    );
    assert!(lost.json().get("current_value").is_none());
}

#[tokio::test]
async fn list_pages_and_encodes_binary() {
    let s = start(2, None).await;
    for k in ["p/a", "p/b", "p/c", "q"] {
        req(&s.addr, "PUT", &format!("/v1/kv/{k}"), "", b"x").await;
    }
    req(&s.addr, "PUT", "/v1/kv/p/%FF", "", b"\x00\x01").await;
    let l = req(&s.addr, "GET", "/v1/kv?prefix=p/&limit=2", "", b"")
        .await
        .json();
    assert_eq!(l["items"].as_array().unwrap().len(), 2);
    assert_eq!(l["more"], true);
    let l = req(&s.addr, "GET", "/v1/kv?prefix=p/&start_after=p/c", "", b"")
        .await
        .json();
    let item = &l["items"][0];
    assert_eq!(
        (item["encoding"].as_str(), item["key"].as_str()),
        (Some("base64"), Some("cC//"))
    );
    assert_eq!(l["more"], false);
}

#[tokio::test]
async fn malformed_requests_get_their_4xx_and_the_node_keeps_serving() {
    let s = start(2, None).await;
    let big_key = format!("/v1/kv/{}", "k".repeat(5 * 1024));
    let huge_header = format!("X-Big: {}\r\n", "h".repeat(100 * 1024));
    let long_idem = format!("Idempotency-Key: {}\r\n", "i".repeat(129));
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        (
            "bad percent",
            "GET",
            "/v1/kv/a%zz".into(),
            400,
            "bad_request",
        ),
        ("empty key", "PUT", "/v1/kv/".into(), 400, "bad_request"),
        ("5 KiB key", "PUT", big_key, 400, "key_too_long"),
        (
            "negative",
            "PUT",
            "/v1/kv/a?if_revision=-1".into(),
            400,
            "bad_request",
        ),
        (
            "non-numeric",
            "GET",
            "/v1/kv?limit=abc".into(),
            400,
            "bad_request",
        ),
        (
            "over u64",
            "PUT",
            "/v1/kv/a?if_revision=18446744073709551616".into(),
            400,
            "bad_request",
        ),
        (
            "ttl zero",
            "PUT",
            "/v1/kv/a?ttl=0".into(),
            400,
            "bad_request",
        ),
        (
            "ttl later",
            "PUT",
            "/v1/kv/a?ttl=5".into(),
            400,
            "bad_request",
        ),
        (
            "consistency",
            "GET",
            "/v1/kv/a?consistency=eventual".into(),
            400,
            "bad_request",
        ),
        (
            "wrong method",
            "POST",
            "/v1/kv/a".into(),
            405,
            "method_not_allowed",
        ),
        (
            "unknown path",
            "GET",
            "/v2/nothing".into(),
            404,
            "not_found",
        ),
        (
            "later issue",
            "POST",
            "/v1/txn".into(),
            501,
            "not_implemented",
        ),
    ];
    for (what, method, target, status, code) in cases {
        let a = req(&s.addr, method, &target, "", b"").await;
        assert_eq!(
            (a.status, a.json()["error"].as_str()),
            (status, Some(code)),
            "{what}"
        );
        assert!(a.json()["message"].is_string(), "{what}");
    }
    let a = req(&s.addr, "POST", "/v1/kv/a", "", b"").await;
    assert_eq!(a.header("allow").as_deref(), Some("GET, PUT, DELETE"));
    let a = req(&s.addr, "PUT", "/v1/kv/a", &long_idem, b"").await;
    assert_eq!(a.status, 400);
    let a = req(
        &s.addr,
        "PUT",
        "/v1/kv/big",
        "",
        &vec![b'v'; 2 * 1024 * 1024],
    )
    .await;
    assert_eq!(
        (a.status, a.json()["error"].as_str()),
        (413, Some("value_too_large"))
    );
    let a = req(&s.addr, "GET", "/health", &huge_header, b"").await;
    assert_eq!(a.status, 431);
    let truncated = b"PUT /v1/kv/t HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nshort";
    let a = raw_maybe_close(&s.addr, truncated, true).await;
    assert!(
        a.status == 0 || a.status == 400,
        "truncated body: {}",
        a.status
    );
    let a = req(&s.addr, "PUT", "/v1/kv/panic", "", b"").await;
    assert_eq!(a.status, 500);
    assert_eq!(req(&s.addr, "GET", "/health", "", b"").await.status, 200);
    let a = req(&s.addr, "PUT", "/v1/kv/slow", "", b"").await;
    assert_eq!(
        (a.status, a.json()["outcome"].as_str()),
        (504, Some("unknown"))
    );
}

#[tokio::test]
async fn idempotency_key_replays_and_detects_reuse() {
    let s = start(2, None).await;
    let h = "Idempotency-Key: abc\r\n";
    let first = req(&s.addr, "PUT", "/v1/kv/i", h, b"v").await;
    let again = req(&s.addr, "PUT", "/v1/kv/i", h, b"v").await;
    assert_eq!(first.json(), again.json());
    assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
    assert!(first.header("idempotent-replayed").is_none());
    let other = req(&s.addr, "PUT", "/v1/kv/i", h, b"w").await;
    assert_eq!(
        (other.status, other.json()["error"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
}

#[tokio::test]
async fn follower_forwards_and_redirects() {
    let leader = start(1, None).await;
    let follower = start(2, Some(leader.addr.clone())).await;
    let a = req(&follower.addr, "PUT", "/v1/kv/f", "", b"via").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-node-id").as_deref(), Some("0000000000000002"));
    let g = req(&leader.addr, "GET", "/v1/kv/f", "", b"").await;
    assert_eq!(g.body, b"via");
    let g = req(&follower.addr, "GET", "/v1/kv/f", "", b"").await;
    assert_eq!((g.status, g.body.as_slice()), (200, &b"via"[..]));
    let r = req(&follower.addr, "PUT", "/v1/kv/f?redirect=true", "", b"x").await;
    assert_eq!(r.status, 307);
    let want = format!("http://{}/v1/kv/f?redirect=true", leader.addr);
    assert_eq!(r.header("location"), Some(want));
    // A forwarded request that reaches a non-leader is not forwarded again.
    let f = req(
        &follower.addr,
        "PUT",
        "/v1/kv/f",
        "X-Rocinante-Forwarded: 1\r\n",
        b"x",
    )
    .await;
    assert_eq!((f.status, f.header("retry-after").is_some()), (503, true));
    // Stale reads are served where they land.
    let g = req(&follower.addr, "GET", "/v1/kv/f?consistency=stale", "", b"").await;
    assert_eq!(g.status, 404);
}

#[tokio::test]
async fn info_routes() {
    let leader = start(1, None).await;
    let follower = start(2, Some("127.0.0.1:1".into())).await;
    let st = req(&leader.addr, "GET", "/v1/status", "", b"").await.json();
    assert_eq!(
        (st["role"].as_str(), st["term"].as_u64()),
        (Some("leader"), Some(3))
    );
    assert_eq!(st["id"], "0000000000000001");
    assert_eq!(
        req(&follower.addr, "GET", "/ready", "", b"").await.status,
        503
    );
    assert_eq!(
        req(&leader.addr, "GET", "/ready", "", b"").await.status,
        200
    );
    let l = req(&follower.addr, "GET", "/v1/leader", "", b"")
        .await
        .json();
    assert_eq!(l["rest"], "127.0.0.1:1");
    let m = req(&leader.addr, "GET", "/metrics", "", b"").await;
    let text = String::from_utf8_lossy(&m.body);
    assert!(text.contains("rocinante_raft_term 3"), "{text}");
    let d = req(&leader.addr, "GET", "/", "", b"").await;
    assert!(String::from_utf8_lossy(&d.body).contains("/v1/status"));
    // The leader at 127.0.0.1:1 is unreachable: nothing was sent, so 503 (not applied).
    let a = req(&follower.addr, "PUT", "/v1/kv/x", "", b"v").await;
    assert_eq!(a.status, 503);
}

#[tokio::test]
async fn the_metric_port_serves_only_metrics() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ctx = ApiContext {
        metrics_listen: Some(format!("127.0.0.1:{port}")),
        ..ApiContext::default()
    };
    let _server = start_with(1, None, ctx).await;
    let addr = format!("127.0.0.1:{port}");
    let mut answer = req(&addr, "GET", "/metrics", "", b"").await;
    // Poll (bounded) until the metrics listener is bound by the spawned server.
    for _ in 0..200 {
        if answer.status != 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        answer = req(&addr, "GET", "/metrics", "", b"").await;
    }
    assert_eq!(answer.status, 200);
    assert!(String::from_utf8_lossy(&answer.body).contains("rocinante_raft_term"));
    assert_eq!(req(&addr, "GET", "/v1/kv/a", "", b"").await.status, 404);
}
