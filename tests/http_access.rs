//! etcd's access rules on the HTTP side of the client port (`--cors`,
//! `--host-whitelist`, `OPTIONS`), and the gateway's snapshot stream, which
//! must hold the same bytes `etcdctl snapshot save` gets over gRPC.

mod common;

use base64::Engine as _;
use common::{Cluster, gw, http_with_headers, json};

#[test]
fn cors_and_host_whitelist_follow_the_flags() {
    // Defaults: any origin, any host.
    let c = Cluster::start(1, &[]);
    let base = c.specs[0].client_url();
    let r =
        http_with_headers("GET", &format!("{base}/version"), None, &[("host", "anything.example")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("accept, content-type, authorization")
    );
    drop(c);

    let c =
        Cluster::start(1, &["--cors=http://ok.example", "--host-whitelist=127.0.0.1,good.example"]);
    let base = c.specs[0].client_url();
    let url = format!("{base}/health");
    let r = http_with_headers("GET", &url, None, &[("origin", "http://ok.example")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("access-control-allow-origin"), Some("http://ok.example"));
    let r = http_with_headers("GET", &url, None, &[("origin", "http://other.example")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    // A browser's preflight is answered at once.
    let r = http_with_headers(
        "OPTIONS",
        &format!("{base}/v3/kv/range"),
        None,
        &[("origin", "http://ok.example")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "");
    assert_eq!(r.header("access-control-allow-methods"), Some("POST, GET, OPTIONS, PUT, DELETE"));

    // An unlisted Host is refused (DNS rebinding), a listed one served.
    let r = http_with_headers("GET", &url, None, &[("host", "evil.example:2379")]);
    assert_eq!(r.status, 421);
    assert!(r.body.contains("the Host header was unrecognized"), "{}", r.body);
    assert!(r.body.contains("--host-whitelist \"evil.example\""), "{}", r.body);
    let r = gw(&base, "/v3/kv/put", r#"{"key":"YQ==","value":"Yg=="}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = http_with_headers(
        "POST",
        &format!("{base}/v3/kv/range"),
        Some(br#"{"key":"YQ=="}"#),
        &[("host", "good.example")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // gRPC does not pass through these rules.
    assert_eq!(c.ctl_ok(0, &["get", "a", "--print-value-only"]).trim(), "b");
}

#[test]
fn gateway_snapshot_streams_what_etcdctl_saves() {
    let c = Cluster::start(1, &[]);
    for i in 0..50 {
        c.ctl_ok(0, &["put", &format!("/snap/{i:02}"), &"x".repeat(100)]);
    }
    let base = c.specs[0].client_url();
    let r = gw(&base, "/v3/maintenance/snapshot", "{}");
    assert_eq!(r.status, 200, "{}", r.body);
    let mut bytes = Vec::new();
    let mut remaining = Vec::new();
    for line in r.body.lines().filter(|l| !l.trim().is_empty()) {
        let v = json(line);
        let result = &v["result"];
        assert!(result.is_object(), "{line}");
        let blob = result["blob"].as_str().unwrap_or("");
        bytes.extend(base64::engine::general_purpose::STANDARD.decode(blob).unwrap());
        remaining.push(result["remaining_bytes"].as_str().unwrap_or("0").to_string());
    }
    assert_eq!(remaining.last().map(String::as_str), Some("0"), "{remaining:?}");
    let dir = tempfile::tempdir().unwrap();
    let from_gw = dir.path().join("gw.db");
    std::fs::write(&from_gw, &bytes).unwrap();
    let from_ctl = dir.path().join("ctl.db");
    c.ctl_ok(0, &["snapshot", "save", from_ctl.to_str().unwrap()]);
    let saved = std::fs::read(&from_ctl).unwrap();
    assert_eq!(bytes.len(), saved.len());
    assert!(bytes == saved, "the gateway's snapshot differs from etcdctl's");
    // And etcdctl reads it as a snapshot of this store.
    let out = std::process::Command::new("etcdctl")
        .args(["snapshot", "status", from_gw.to_str().unwrap(), "-w", "json"])
        .env("ETCDCTL_API", "3")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(status["revision"], 51, "{status}");
}

/// The gateway's watch takes later requests on the same body: a cancel sent
/// after the create (and after an event) cancels the watcher.
#[test]
fn gateway_watch_takes_a_cancel_sent_later_on_the_same_body() {
    use http_body_util::BodyExt as _;
    use std::time::Duration;

    let c = Cluster::start(1, &[]);
    let addr = c.specs[0].endpoint();
    let rt = common::runtime();
    let lines: Vec<serde_json::Value> = rt.block_on(async {
        let work = async {
            let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let (tx, rx) = tokio::sync::mpsc::channel::<
                Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>,
            >(4);
            let body =
                http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
            let req = hyper::Request::builder()
                .method("POST")
                .uri("/v3/watch")
                .header("host", &addr)
                .header("content-type", "application/json")
                .body(body)
                .unwrap();
            let send = |text: &str| {
                let tx = tx.clone();
                let frame = hyper::body::Frame::data(bytes::Bytes::from(text.to_string()));
                async move { tx.send(Ok(frame)).await.unwrap() }
            };
            send(&format!(r#"{{"create_request":{{"key":"{}"}}}}"#, common::b64("w"))).await;
            let resp = sender.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            let mut body = resp.into_body();
            let mut seen = Vec::new();
            let mut pending = String::new();
            // Reads until a line satisfies `want`, collecting every line.
            let mut next_line =
                async |want: &dyn Fn(&serde_json::Value) -> bool,
                       seen: &mut Vec<serde_json::Value>| {
                    loop {
                        while let Some(nl) = pending.find('\n') {
                            let line: String = pending.drain(..=nl).collect();
                            if line.trim().is_empty() {
                                continue;
                            }
                            let v = json(line.trim());
                            let hit = want(&v);
                            seen.push(v);
                            if hit {
                                return;
                            }
                        }
                        let frame = body.frame().await.expect("the stream ended early").unwrap();
                        if let Ok(data) = frame.into_data() {
                            pending.push_str(&String::from_utf8_lossy(&data));
                        }
                    }
                };
            next_line(&|v| v["result"]["created"] == true, &mut seen).await;
            // An event, through gRPC.
            let mut kv = common::connect(&c.specs[0].client_url()).await.unwrap();
            common::put(&mut kv, "w", "1").await.unwrap();
            next_line(&|v| v["result"]["events"].is_array(), &mut seen).await;
            // Now the cancel, on the same request body.
            send(r#"{"cancel_request":{"watch_id":"0"}}"#).await;
            next_line(&|v| v["result"]["canceled"] == true, &mut seen).await;
            drop(tx);
            seen
        };
        tokio::time::timeout(Duration::from_secs(30), work).await.expect("watch exchange timed out")
    });
    assert_eq!(lines.len(), 3, "{lines:?}");
    let event = &lines[1]["result"]["events"][0];
    assert_eq!(event["kv"]["key"], common::b64("w"), "{lines:?}");
}
