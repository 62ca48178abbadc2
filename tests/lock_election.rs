//! etcd's Lock and Election services, against a real etcd: the same calls,
//! made through the gRPC clients generated from Logbook's protos and
//! through the JSON gateway, must get the same answers from Logbook and
//! from etcd (keys, values, revisions, error codes and messages; only the
//! headers' member, cluster and term differ). Both stores start empty, so
//! revisions match call for call.
//!
//! etcd is the `etcd` on PATH (Debian's 3.4), and for the gRPC calls also
//! 3.6 when `scripts/etcd-bin.sh` has built it. The real `etcdctl lock` and
//! `etcdctl elect` (client-side mutexes and elections over KV, Watch and
//! Lease) are run against Logbook, alone and mixed with the server-side
//! calls. Every wait is bounded; every process is stopped by its handle.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Cluster, Etcd, b64, etcds, gw, multi_thread_runtime};
use logbook_api::etcdserverpb::kv_client::KvClient;
use logbook_api::etcdserverpb::lease_client::LeaseClient;
use logbook_api::etcdserverpb::{
    LeaseGrantRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest, RangeRequest, ResponseHeader,
};
use logbook_api::mvccpb::KeyValue;
use logbook_api::v3electionpb::election_client::ElectionClient;
use logbook_api::v3electionpb::{
    CampaignRequest, LeaderKey, LeaderRequest, ProclaimRequest, ResignRequest,
};
use logbook_api::v3lockpb::lock_client::LockClient;
use logbook_api::v3lockpb::{LockRequest, UnlockRequest};
use tonic::transport::Channel;

/// How long a call that must block is given to (wrongly) return.
const STILL_BLOCKED: Duration = Duration::from_millis(500);
/// The bound on every wait that must end.
const BOUND: Duration = Duration::from_secs(15);

/// Runs `scenario` against a fresh Logbook and a fresh instance of every
/// etcd, and requires the same transcript from each.
fn compare<F, Fut>(what: &str, scenario: F)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let logbook = Cluster::start(1, &[]);
    let rt = multi_thread_runtime();
    let ours = rt.block_on(scenario(logbook.specs[0].client_url()));
    println!("{what} on logbook: {ours:#?}");
    for program in etcds() {
        let etcd = Etcd::start_program(&program);
        let theirs = rt.block_on(scenario(etcd.client_url.clone()));
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert_eq!(
                a, b,
                "{what}: step {i} differs from {program}\nlogbook: {ours:#?}\n{program}: {theirs:#?}"
            );
        }
        assert_eq!(ours.len(), theirs.len(), "{what}: {ours:#?}\n{program}: {theirs:#?}");
    }
}

#[derive(Clone)]
struct Clients {
    kv: KvClient<Channel>,
    lease: LeaseClient<Channel>,
    lock: LockClient<Channel>,
    election: ElectionClient<Channel>,
}

async fn clients(url: &str) -> Clients {
    let channel = Channel::from_shared(url.to_string())
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap();
    Clients {
        kv: KvClient::new(channel.clone()),
        lease: LeaseClient::new(channel.clone()),
        lock: LockClient::new(channel.clone()),
        election: ElectionClient::new(channel),
    }
}

fn status(s: &tonic::Status) -> String {
    format!("error {:?} {:?}", s.code(), s.message())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn rev(h: Option<ResponseHeader>) -> i64 {
    h.expect("a response header").revision
}

fn show_kv(kv: &KeyValue) -> String {
    format!(
        "{}={} create={} mod={} version={} lease={:x}",
        text(&kv.key),
        text(&kv.value),
        kv.create_revision,
        kv.mod_revision,
        kv.version,
        kv.lease
    )
}

async fn grant(c: &mut Clients, id: i64, ttl: i64) -> String {
    let r = c.lease.lease_grant(LeaseGrantRequest { id, ttl }).await.unwrap().into_inner();
    format!("grant {:x} ttl {} rev {}", r.id, r.ttl, rev(r.header))
}

async fn revoke(c: &mut Clients, id: i64) -> String {
    match c.lease.lease_revoke(LeaseRevokeRequest { id }).await {
        Ok(r) => format!("revoke {id:x} rev {}", rev(r.into_inner().header)),
        Err(e) => status(&e),
    }
}

/// `key@create_revision` of every key under `prefix`.
async fn queue(c: &mut Clients, prefix: &str) -> String {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    let r =
        c.kv.range(RangeRequest {
            key: prefix.to_string().into(),
            range_end: end.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<String> =
        r.kvs.iter().map(|kv| format!("{}@{}", text(&kv.key), kv.create_revision)).collect();
    format!("queue {prefix} [{}] rev {}", keys.join(" "), rev(r.header))
}

/// Polls (bounded) until `queue(prefix)` no longer lists `key`.
async fn until_gone(c: &mut Clients, prefix: &str, key: &str) -> String {
    let deadline = Instant::now() + BOUND;
    loop {
        let q = queue(c, prefix).await;
        if !q.contains(&format!("{key}@")) {
            return q;
        }
        assert!(Instant::now() < deadline, "{key} was never removed: {q}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

type Pending = tokio::task::JoinHandle<String>;

/// Asserts the call has not returned yet.
async fn still_blocked(call: &Pending, what: &str) {
    tokio::time::sleep(STILL_BLOCKED).await;
    assert!(!call.is_finished(), "{what} should block but returned");
}

/// The call's outcome, waiting for it at most [`BOUND`].
async fn finish(call: Pending, what: &str) -> String {
    tokio::time::timeout(BOUND, call)
        .await
        .unwrap_or_else(|_| panic!("{what} still blocked after {BOUND:?}"))
        .unwrap()
}

fn lock(c: &Clients, name: &str, lease: i64) -> Pending {
    let mut client = c.lock.clone();
    let name = name.to_string();
    tokio::spawn(async move {
        match client.lock(LockRequest { name: name.into(), lease }).await {
            Ok(r) => {
                let r = r.into_inner();
                format!("locked {} rev {}", text(&r.key), rev(r.header))
            }
            Err(e) => status(&e),
        }
    })
}

async fn unlock(c: &mut Clients, key: &str) -> String {
    match c.lock.unlock(UnlockRequest { key: key.to_string().into() }).await {
        Ok(r) => format!("unlocked {key:?} rev {}", rev(r.into_inner().header)),
        Err(e) => status(&e),
    }
}

async fn lock_scenario(url: String) -> Vec<String> {
    let mut c = clients(&url).await;
    let mut log = Vec::new();
    for id in [0x100, 0x200, 0x300, 0x500] {
        log.push(grant(&mut c, id, 60).await);
    }
    // Uncontended; then again with the same lease, which is the same hold.
    log.push(finish(lock(&c, "lk", 0x100), "a free lock").await);
    log.push(finish(lock(&c, "lk", 0x100), "a lock held by the same lease").await);

    // A second locker queues until the holder unlocks.
    let second = lock(&c, "lk", 0x200);
    still_blocked(&second, "a held lock").await;
    log.push(queue(&mut c, "lk/").await);
    log.push(unlock(&mut c, "lk/100").await);
    log.push(finish(second, "the waiter after Unlock").await);

    // The holder's lease revoked releases the lock.
    let third = lock(&c, "lk", 0x300);
    still_blocked(&third, "a held lock").await;
    log.push(revoke(&mut c, 0x200).await);
    log.push(finish(third, "the waiter after the holder's lease was revoked").await);

    // ... and so does its expiry.
    log.push(grant(&mut c, 0x400, 2).await);
    log.push(finish(lock(&c, "ex", 0x400), "a free lock").await);
    let after_expiry = lock(&c, "ex", 0x300);
    still_blocked(&after_expiry, "a held lock").await;
    log.push(finish(after_expiry, "the waiter after the holder's lease expired").await);

    // A waiter whose client goes away leaves the queue.
    let gone = lock(&c, "lk", 0x500);
    still_blocked(&gone, "a held lock").await;
    log.push(queue(&mut c, "lk/").await);
    gone.abort();
    log.push(until_gone(&mut c, "lk/", "lk/500").await);

    // Unlock of a key nobody holds, of no key; Lock with an unknown lease.
    log.push(unlock(&mut c, "lk/nobody").await);
    log.push(unlock(&mut c, "").await);
    log.push(finish(lock(&c, "lk", 0x999), "a lock with an unknown lease").await);
    log.push(queue(&mut c, "lk/").await);

    // No lease: the server grants one of 60 s for the key.
    let fresh = finish(lock(&c, "fresh", 0), "a lock with no lease").await;
    let key = fresh.split(' ').nth(1).unwrap().to_string();
    let id = i64::from_str_radix(key.strip_prefix("fresh/").unwrap(), 16).unwrap();
    let ttl = c
        .lease
        .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true })
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<String> = ttl.keys.iter().map(|k| text(k)).collect();
    assert_eq!(keys, vec![key.clone()], "the fresh lease holds the lock's key");
    log.push(format!("{} granted ttl {}", fresh.replace(&key, "fresh/<lease>"), ttl.granted_ttl));
    log
}

#[test]
fn lock_answers_as_etcds() {
    compare("Lock", lock_scenario);
}

fn campaign(
    c: &Clients,
    name: &str,
    lease: i64,
    value: &str,
) -> tokio::task::JoinHandle<Result<(LeaderKey, String), String>> {
    let mut client = c.election.clone();
    let req =
        CampaignRequest { name: name.to_string().into(), lease, value: value.to_string().into() };
    tokio::spawn(async move {
        match client.campaign(req).await {
            Ok(r) => {
                let r = r.into_inner();
                let l = r.leader.expect("a leader key");
                let shown = format!(
                    "campaigned {} key {} rev {} lease {:x} header rev {}",
                    text(&l.name),
                    text(&l.key),
                    l.rev,
                    l.lease,
                    rev(r.header)
                );
                Ok((l, shown))
            }
            Err(e) => Err(status(&e)),
        }
    })
}

async fn won(
    call: tokio::task::JoinHandle<Result<(LeaderKey, String), String>>,
    what: &str,
    log: &mut Vec<String>,
) -> LeaderKey {
    let (leader, shown) = tokio::time::timeout(BOUND, call)
        .await
        .unwrap_or_else(|_| panic!("{what} still blocked after {BOUND:?}"))
        .unwrap()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    log.push(shown);
    leader
}

async fn leader(c: &mut Clients, name: &str) -> String {
    match c.election.leader(LeaderRequest { name: name.to_string().into() }).await {
        Ok(r) => {
            let r = r.into_inner();
            format!("leader {} rev {}", show_kv(&r.kv.unwrap()), rev(r.header))
        }
        Err(e) => status(&e),
    }
}

async fn proclaim(c: &mut Clients, leader: Option<LeaderKey>, value: &str) -> String {
    let req = ProclaimRequest { leader, value: value.to_string().into() };
    match c.election.proclaim(req).await {
        Ok(r) => format!("proclaimed {value} rev {}", rev(r.into_inner().header)),
        Err(e) => status(&e),
    }
}

async fn resign(c: &mut Clients, leader: Option<LeaderKey>) -> String {
    match c.election.resign(ResignRequest { leader }).await {
        Ok(r) => format!("resigned rev {}", rev(r.into_inner().header)),
        Err(e) => status(&e),
    }
}

/// What an Observe stream has delivered so far.
#[derive(Clone, Default)]
struct Observed(Arc<Mutex<Vec<String>>>);

impl Observed {
    fn start(
        c: &Clients,
        name: &str,
        known: &'static [i64],
    ) -> (Observed, tokio::task::JoinHandle<()>) {
        let seen = Observed::default();
        let out = seen.clone();
        let mut client = c.election.clone();
        let name = name.to_string();
        let task = tokio::spawn(async move {
            let mut stream = match client.observe(LeaderRequest { name: name.into() }).await {
                Ok(s) => s.into_inner(),
                Err(e) => return out.0.lock().unwrap().push(status(&e)),
            };
            loop {
                let line = match stream.message().await {
                    Ok(Some(r)) => {
                        let mut kv = r.kv.unwrap();
                        if !known.contains(&kv.lease) {
                            kv.lease = 0xf; // a lease the server granted
                        }
                        format!("observed {} rev {}", show_kv(&kv), rev(r.header))
                    }
                    Ok(None) => "observe ended".to_string(),
                    Err(e) => status(&e),
                };
                let end = !line.starts_with("observed");
                out.0.lock().unwrap().push(line);
                if end {
                    return;
                }
            }
        });
        (seen, task)
    }

    /// Waits (bounded) until `n` responses have come.
    async fn until(&self, n: usize) {
        let deadline = Instant::now() + BOUND;
        while self.0.lock().unwrap().len() < n {
            assert!(Instant::now() < deadline, "observed only {:?}", self.0.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

const A: i64 = 0xa00;
const B: i64 = 0xb00;
const C: i64 = 0xc00;

async fn election_scenario(url: String) -> Vec<String> {
    let mut c = clients(&url).await;
    let mut log = Vec::new();
    for id in [A, B, C] {
        log.push(grant(&mut c, id, 60).await);
    }
    log.push(leader(&mut c, "el").await);
    // An observer from before anyone campaigns sees every leader and value.
    let (observed, observer) = Observed::start(&c, "el", &[A, B, C]);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let a = won(campaign(&c, "el", A, "v1"), "the first campaign", &mut log).await;
    log.push(leader(&mut c, "el").await);
    log.push(proclaim(&mut c, Some(a.clone()), "v2").await);

    // A second campaigner waits for the leader to go.
    let b = campaign(&c, "el", B, "w1");
    tokio::time::sleep(STILL_BLOCKED).await;
    assert!(!b.is_finished(), "a campaign with a leader in place returned");
    let not_b = LeaderKey { name: "el".into(), key: "el/b00".into(), rev: 999, lease: B };
    log.push(proclaim(&mut c, Some(not_b), "usurp").await);
    // The leader campaigning again with a new value proclaims it.
    let again = won(campaign(&c, "el", A, "v3"), "the leader's second campaign", &mut log).await;
    assert_eq!(again, a);
    log.push(leader(&mut c, "el").await);
    observed.until(3).await;

    log.push(resign(&mut c, Some(a.clone())).await);
    let b = won(b, "the waiting campaign after Resign", &mut log).await;
    observed.until(4).await;
    log.push(proclaim(&mut c, Some(a.clone()), "late").await);
    log.push(resign(&mut c, Some(a.clone())).await);
    log.push(proclaim(&mut c, None, "x").await);
    log.push(resign(&mut c, None).await);
    log.push(leader(&mut c, "el").await);

    // The leader's lease revoked: no leader until the next campaign.
    log.push(revoke(&mut c, B).await);
    log.push(leader(&mut c, "el").await);
    let c_key = won(campaign(&c, "el", C, "x1"), "a campaign with no leader", &mut log).await;
    observed.until(5).await;
    // With no lease named, etcd proclaims with a lease of its own granting.
    let no_lease = LeaderKey { lease: 0, ..c_key.clone() };
    log.push(proclaim(&mut c, Some(no_lease), "x2").await);
    observed.until(6).await;
    observer.abort();
    log.extend(observed.0.lock().unwrap().iter().cloned());

    // A campaigner whose client goes away resigns.
    let gone = campaign(&c, "el", A, "q");
    tokio::time::sleep(STILL_BLOCKED).await;
    assert!(!gone.is_finished(), "a campaign with a leader in place returned");
    log.push(queue(&mut c, "el/").await);
    gone.abort();
    log.push(until_gone(&mut c, "el/", "el/a00").await);
    log.push(format!("b was {}", text(&b.key)));
    log
}

#[test]
fn election_answers_as_etcds() {
    compare("Election", election_scenario);
}

// ---- the JSON gateway ----

/// A gateway answer with each header cut to its revision.
fn normal(mut v: serde_json::Value) -> serde_json::Value {
    match &mut v {
        serde_json::Value::Object(map) => {
            for (k, field) in map.iter_mut() {
                if k == "header" {
                    *field = serde_json::json!({ "revision": field["revision"] });
                } else {
                    *field = normal(field.take());
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                *item = normal(item.take());
            }
        }
        _ => {}
    }
    v
}

fn post(base: &str, path: &str, body: &str) -> String {
    let r = gw(base, path, body);
    format!("{path} {} {}", r.status, normal(r.json()))
}

/// Sends one POST over a plain socket and reads for `wait`; then hangs up,
/// as a client that gives up does. Returns every JSON line read.
fn post_and_hang_up(base: &str, path: &str, body: &str, wait: Duration) -> Vec<serde_json::Value> {
    let addr = base.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        s.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    drop(s);
    // The body is chunked; each message is a line in a chunk of its own.
    String::from_utf8_lossy(&got)
        .split(['\r', '\n'])
        .filter(|l| l.starts_with('{'))
        .map(|l| normal(serde_json::from_str(l).unwrap()))
        .collect()
}

fn gateway_scenario(base: &str) -> Vec<String> {
    let mut log = Vec::new();
    for id in [4096, 4097, 4098] {
        log.push(post(base, "/v3/lease/grant", &format!(r#"{{"ID":"{id}","TTL":"60"}}"#)));
    }
    let lock = |lease: i64| format!(r#"{{"name":"{}","lease":"{lease}"}}"#, b64("gw"));
    log.push(post(base, "/v3/lock/lock", &lock(4096)));
    let waiter = {
        let (base, body) = (base.to_string(), lock(4097));
        std::thread::spawn(move || post(&base, "/v3/lock/lock", &body))
    };
    std::thread::sleep(STILL_BLOCKED);
    assert!(!waiter.is_finished(), "a held lock was granted through the gateway");
    log.push(post(base, "/v3/lock/unlock", &format!(r#"{{"key":"{}"}}"#, b64("gw/1000"))));
    log.push(waiter.join().unwrap());
    // A gateway client that gives up waiting leaves the queue.
    let gave_up = post_and_hang_up(base, "/v3/lock/lock", &lock(4098), Duration::from_secs(1));
    assert!(gave_up.is_empty(), "a held lock was granted: {gave_up:?}");
    let range = format!(r#"{{"key":"{}","range_end":"{}"}}"#, b64("gw/"), b64("gw0"));
    let deadline = Instant::now() + BOUND;
    loop {
        let r = gw(base, "/v3/kv/range", &range).json();
        if r["count"] == "1" {
            log.push(format!("queue {}", normal(r)));
            break;
        }
        assert!(Instant::now() < deadline, "the abandoned waiter's key stayed: {r}");
        std::thread::sleep(Duration::from_millis(50));
    }

    let name = b64("ge");
    log.push(post(base, "/v3/election/leader", &format!(r#"{{"name":"{name}"}}"#)));
    let observer = {
        let (base, body) = (base.to_string(), format!(r#"{{"name":"{name}"}}"#));
        std::thread::spawn(move || {
            post_and_hang_up(&base, "/v3/election/observe", &body, Duration::from_secs(3))
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let campaign = gw(
        base,
        "/v3/election/campaign",
        &format!(r#"{{"name":"{name}","lease":"4096","value":"{}"}}"#, b64("a")),
    );
    let won = campaign.json();
    log.push(format!("campaign {} {}", campaign.status, normal(won.clone())));
    let leader_key = won["leader"].to_string();
    let proclaim = format!(r#"{{"leader":{leader_key},"value":"{}"}}"#, b64("b"));
    log.push(post(base, "/v3/election/proclaim", &proclaim));
    log.push(post(base, "/v3/election/leader", &format!(r#"{{"name":"{name}"}}"#)));
    for line in observer.join().unwrap() {
        log.push(format!("observed {line}"));
    }
    log.push(post(base, "/v3/election/resign", &format!(r#"{{"leader":{leader_key}}}"#)));
    log.push(post(base, "/v3/election/proclaim", &proclaim));
    log.push(post(base, "/v3/election/resign", "{}"));
    log
}

#[test]
fn gateway_answers_as_etcds() {
    let logbook = Cluster::start(1, &[]);
    let ours = gateway_scenario(&logbook.specs[0].client_url());
    println!("gateway on logbook: {ours:#?}");
    // Logbook's gateway speaks grpc-gateway v1's JSON, as etcd 3.4 and 3.5.
    let etcd = Etcd::start();
    let theirs = gateway_scenario(&etcd.client_url);
    assert_eq!(ours, theirs, "\nlogbook: {ours:#?}\netcd: {theirs:#?}");
}

// ---- etcdctl's client-side mutexes and elections against Logbook ----

/// A process killed when dropped, its stdout read line by line.
struct Ctl {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Ctl {
    fn spawn(endpoint: &str, args: &[&str]) -> Ctl {
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcdctl must be installed");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ctl { child, lines }
    }

    fn line(&self, what: &str) -> String {
        self.lines.recv_timeout(BOUND).unwrap_or_else(|_| panic!("etcdctl printed no {what}"))
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn interrupt(&self) {
        // SAFETY: kill(2) on the PID of a child we own and have not reaped.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
    }

    /// Waits (bounded) for the exit; true if it succeeded.
    fn exited_ok(&mut self) -> bool {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(Instant::now() < deadline, "etcdctl did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn etcdctl_lock_and_elect_work_with_the_services() {
    let logbook = Cluster::start(1, &[]);
    let endpoint = logbook.specs[0].endpoint();
    let rt = multi_thread_runtime();
    let mut c = rt.block_on(clients(&logbook.specs[0].client_url()));
    for id in [0x11, 0x22] {
        rt.block_on(grant(&mut c, id, 60));
    }

    // etcdctl's own mutex, uncontended: it runs the command holding the lock.
    let mut ctl = Ctl::spawn(&endpoint, &["lock", "demo", "echo", "acquired"]);
    assert_eq!(ctl.line("command output"), "acquired");
    assert!(ctl.exited_ok());

    // Held through the Lock service, etcdctl's lock waits for Unlock.
    let held = rt.block_on(async { finish(lock(&c, "demo", 0x11), "a free lock").await });
    assert!(held.starts_with("locked demo/11 "), "{held}");
    let mut ctl = Ctl::spawn(&endpoint, &["lock", "demo", "echo", "second"]);
    std::thread::sleep(Duration::from_secs(1));
    assert!(ctl.running(), "etcdctl took a lock the Lock service holds");
    rt.block_on(unlock(&mut c, "demo/11"));
    assert_eq!(ctl.line("command output"), "second");
    assert!(ctl.exited_ok());

    // Held by etcdctl, the Lock service waits until etcdctl lets go.
    let mut ctl = Ctl::spawn(&endpoint, &["lock", "demo"]);
    let key = ctl.line("lock key");
    assert!(key.starts_with("demo/"), "{key}");
    rt.block_on(async {
        let waiter = lock(&c, "demo", 0x22);
        still_blocked(&waiter, "a lock etcdctl holds").await;
        ctl.interrupt();
        let got = finish(waiter, "the Lock after etcdctl unlocked").await;
        assert!(got.starts_with("locked demo/22 "), "{got}");
    });
    assert!(ctl.exited_ok());

    // etcdctl elect wins an empty election; the service sees its leader;
    // a server-side campaign waits until etcdctl resigns; etcdctl's
    // observer sees the new leader's value.
    let mut elect = Ctl::spawn(&endpoint, &["elect", "vote", "p1"]);
    let key = elect.line("leader key");
    assert_eq!(elect.line("leader value"), "p1");
    let seen = rt.block_on(leader(&mut c, "vote"));
    assert!(seen.starts_with(&format!("leader {key}=p1 ")), "{seen}");
    let observer = Ctl::spawn(&endpoint, &["elect", "-l", "vote"]);
    assert_eq!(observer.line("observed key"), key);
    assert_eq!(observer.line("observed value"), "p1");
    rt.block_on(async {
        let mut log = Vec::new();
        let next = campaign(&c, "vote", 0x11, "p2");
        tokio::time::sleep(STILL_BLOCKED).await;
        assert!(!next.is_finished(), "a campaign beat etcdctl's leader");
        elect.interrupt();
        let won = won(next, "the campaign after etcdctl resigned", &mut log).await;
        assert_eq!(won.key, "vote/11");
    });
    assert!(elect.exited_ok());
    assert_eq!(observer.line("observed key"), "vote/11");
    assert_eq!(observer.line("observed value"), "p2");
}

/// Every member serves the services: a lock taken through one member is
/// waited for through another and released through a third; an election's
/// leader, campaigners and observers may all be on different members.
#[test]
fn any_member_serves_locks_and_elections() {
    let cluster = Cluster::start(3, &[]);
    let rt = multi_thread_runtime();
    rt.block_on(async {
        let mut m: Vec<Clients> = Vec::new();
        for spec in &cluster.specs {
            m.push(clients(&spec.client_url()).await);
        }
        for id in [0x1, 0x2, 0x3] {
            grant(&mut m[0], id, 60).await;
        }
        let held = finish(lock(&m[0], "cl", 0x1), "a free lock").await;
        assert!(held.starts_with("locked cl/1 "), "{held}");
        let waiter = lock(&m[1], "cl", 0x2);
        still_blocked(&waiter, "a lock held through another member").await;
        unlock(&mut m[2], "cl/1").await;
        let got = finish(waiter, "the waiter after Unlock on another member").await;
        assert!(got.starts_with("locked cl/2 "), "{got}");

        let (observed, observer) = Observed::start(&m[1], "ce", &[0x1, 0x2, 0x3]);
        let first = won(campaign(&m[2], "ce", 0x1, "one"), "a campaign", &mut Vec::new()).await;
        let second = campaign(&m[0], "ce", 0x3, "two");
        tokio::time::sleep(STILL_BLOCKED).await;
        assert!(!second.is_finished(), "a campaign beat the leader");
        assert!(leader(&mut m[0], "ce").await.starts_with("leader ce/1=one "));
        resign(&mut m[1], Some(first)).await;
        won(second, "the campaign after Resign on another member", &mut Vec::new()).await;
        observed.until(2).await;
        observer.abort();
        let seen = observed.0.lock().unwrap().clone();
        assert!(seen[0].starts_with("observed ce/1=one "), "{seen:?}");
        assert!(seen[1].starts_with("observed ce/3=two "), "{seen:?}");
    });
}

/// `msg` as a request carrying `token` (none when empty).
fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if !token.is_empty() {
        req.metadata_mut().insert("token", token.parse().unwrap());
    }
    req
}

/// With auth on, the services act with the caller's permissions: a user
/// confined to `ok/` may lock and campaign there and nowhere else; an
/// observer of an election it may not read gets an empty stream.
async fn auth_scenario(url: String) -> Vec<String> {
    let endpoint = url.strip_prefix("http://").unwrap().to_string();
    let ctl = |args: &[&str]| {
        let out = common::etcdctl(&endpoint, args, None);
        assert!(out.status.success(), "etcdctl {args:?}: {}", text(&out.stderr));
    };
    ctl(&["user", "add", "root:rootpw"]);
    ctl(&["user", "add", "u:upw"]);
    ctl(&["role", "add", "r"]);
    ctl(&["role", "grant-permission", "--prefix=true", "r", "readwrite", "ok/"]);
    ctl(&["user", "grant-role", "u", "r"]);
    ctl(&["auth", "enable"]);
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    let auth = logbook_api::etcdserverpb::auth_client::AuthClient::new(channel.clone());
    let token = |name: &str, password: &str| {
        let req = logbook_api::etcdserverpb::AuthenticateRequest {
            name: name.into(),
            password: password.into(),
        };
        let mut auth = auth.clone();
        async move { auth.authenticate(req).await.unwrap().into_inner().token }
    };
    let (root, u) = (token("root", "rootpw").await, token("u", "upw").await);
    let mut lease = LeaseClient::new(channel.clone());
    let mut locks = LockClient::new(channel.clone());
    let mut election = ElectionClient::new(channel);
    let mut log = Vec::new();
    lease.lease_grant(with_token(LeaseGrantRequest { id: 0x77, ttl: 60 }, &root)).await.unwrap();
    for (who, token, name) in
        [("u", &u, "ok"), ("u", &u, "no"), ("nobody", &String::new(), "ok"), ("root", &root, "no")]
    {
        let req = with_token(LockRequest { name: name.to_string().into(), lease: 0x77 }, token);
        log.push(match locks.lock(req).await {
            Ok(r) => format!("{who} locked {}", text(&r.into_inner().key)),
            Err(e) => format!("{who} lock {name}: {}", status(&e)),
        });
        let req = CampaignRequest { name: name.into(), lease: 0x77, value: "v".into() };
        log.push(match election.campaign(with_token(req, token)).await {
            Ok(r) => format!("{who} leads {}", text(&r.into_inner().leader.unwrap().key)),
            Err(e) => format!("{who} campaign {name}: {}", status(&e)),
        });
        let req = with_token(LeaderRequest { name: name.into() }, token);
        log.push(match election.leader(req).await {
            Ok(r) => format!("{who} sees {}", show_kv(&r.into_inner().kv.unwrap())),
            Err(e) => format!("{who} leader {name}: {}", status(&e)),
        });
        let req = with_token(LeaderRequest { name: name.into() }, token);
        let observed = match election.observe(req).await {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                match tokio::time::timeout(Duration::from_millis(500), stream.message()).await {
                    Ok(Ok(Some(r))) => format!("observes {}", show_kv(&r.kv.unwrap())),
                    Ok(Ok(None)) => "observe ended".to_string(),
                    Ok(Err(e)) => format!("observe failed: {}", status(&e)),
                    Err(_) => "observe waits".to_string(),
                }
            }
            Err(e) => format!("observe refused: {}", status(&e)),
        };
        log.push(format!("{who} {name}: {observed}"));
    }
    log
}

#[test]
fn services_check_the_callers_permissions_as_etcds() {
    compare("Lock and Election with auth", auth_scenario);
}
