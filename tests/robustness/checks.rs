//! The checkers run on a recorded history and the healed cluster. Each returns the
//! anomalies it found, described precisely enough to replay (with the run's seed).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use logbook_api::etcdserverpb::maintenance_client::MaintenanceClient;
use logbook_api::etcdserverpb::watch_client::WatchClient;
use logbook_api::etcdserverpb::watch_request::RequestUnion;
use logbook_api::etcdserverpb::{HashKvRequest, RangeRequest, WatchCreateRequest, WatchRequest};
use tonic::transport::Channel;

use super::history::{Ev, Kind, LiveWatch, Outcome, Record};
use super::linearizability::{self, Input, NEVER, Operation, Output, Verdict};
use super::workload::{KEYS, LeaseLife, WatchRun, connect, key_name, parse_value};

/// Search budget per key; past it the key counts as inconclusive, not as an anomaly.
const MAX_STEPS: u64 = 2_000_000;

/// The result of the linearizability check.
#[derive(Default, Debug)]
pub struct LinReport {
    pub checked_ops: usize,
    pub inconclusive_keys: Vec<usize>,
    pub anomalies: Vec<String>,
}

/// Porcupine per key over linearizable reads and all writes. Serializable reads are not
/// linearizable by definition; [`state_at_revisions`] checks them.
pub fn linearizability(records: &[Record]) -> LinReport {
    let mut report = LinReport::default();
    let mut verdicts = std::collections::BTreeMap::new();
    for key in 0..KEYS {
        let of_key: Vec<&Record> = records.iter().filter(|r| r.key == key).collect();
        // Every value some read returned: an unknown put or CAS never observed may be
        // dropped (it could take effect after everything else, which nobody would see).
        // Not an unknown put with a lease: a revoke of that lease deletes the key, which
        // a read can see without ever seeing the value (ci_crashes_and_pauses, seed
        // 777869848: an unknown put attached to lease L, then Revoke(L), then a get of
        // nothing was reported as not linearizable).
        let mut observed = HashSet::new();
        for r in &of_key {
            match r.outcome {
                Outcome::Get { value: Some(v), .. }
                | Outcome::Cas { got: Some(v), .. }
                | Outcome::Delete { removed: Some(v), .. } => {
                    observed.insert(v);
                }
                _ => {}
            }
        }
        let mut ops = Vec::new();
        let mut source = Vec::new();
        for r in &of_key {
            let input = match r.kind {
                Kind::Get { serializable: true } => continue,
                Kind::Get { serializable: false } => Input::Get,
                Kind::Put { value } => Input::Put(value),
                Kind::PutLease { value, lease } => Input::PutLease { value, lease },
                Kind::Revoke { lease } => Input::Revoke(lease),
                Kind::Delete => Input::Delete,
                Kind::Cas { expect, new } => Input::Cas { expect, new },
            };
            let output = match &r.outcome {
                Outcome::Get { value, .. } => Output::Get(*value),
                Outcome::Put { .. } => Output::Put,
                Outcome::Revoke { .. } => Output::Revoke,
                Outcome::Delete { removed, .. } => Output::Delete { removed: *removed },
                Outcome::Cas { succeeded, got, .. } => {
                    Output::Cas { succeeded: *succeeded, got: *got }
                }
                Outcome::Failed(_) => continue,
                Outcome::Unknown(_) => {
                    if let Input::Put(v) | Input::Cas { new: v, .. } = input
                        && !observed.contains(&v)
                    {
                        continue;
                    }
                    Output::Unknown
                }
            };
            let ret = if output == Output::Unknown { NEVER } else { r.ret };
            ops.push(Operation { input, output, invoke: r.invoke, ret });
            source.push(*r);
        }
        report.checked_ops += ops.len();
        let verdict = linearizability::check(&ops, None, MAX_STEPS);
        verdicts.insert(key, verdict.clone());
        match verdict {
            Verdict::Linearizable => {}
            Verdict::Inconclusive => report.inconclusive_keys.push(key),
            Verdict::NotLinearizable { stuck_at } => {
                let stuck = source[stuck_at];
                let mut around: Vec<&Record> = source
                    .iter()
                    .copied()
                    .filter(|r| {
                        r.invoke + 3_000_000_000 >= stuck.invoke
                            && r.invoke <= stuck.ret.saturating_add(500_000_000)
                    })
                    .collect();
                around.sort_by_key(|r| r.invoke);
                let excerpt: Vec<String> =
                    around.iter().rev().take(60).rev().map(|r| format!("    {r}")).collect();
                report.anomalies.push(format!(
                    "key {} ({}): history not linearizable; no linearization explains\n    {stuck}\n  \
                     operations on the key around it (by invoke time):\n{}",
                    key,
                    key_name(key),
                    excerpt.join("\n")
                ));
            }
        }
    }
    // The second, independent checker must reach the same verdicts.
    report.anomalies.extend(super::porcupine::disagreements(records, &verdicts));
    report
}

/// Revisions across keys: every acknowledged write got its own revision, and an operation
/// invoked after a write returned answers with a header revision at least the write's
/// (strictly greater for a write).
pub fn revision_order(records: &[Record]) -> Vec<String> {
    let mut anomalies = Vec::new();
    let mut by_rev: HashMap<i64, &Record> = HashMap::new();
    for r in records {
        if let Some(rev) = r.write_rev()
            && let Some(other) = by_rev.insert(rev, r)
        {
            anomalies.push(format!(
                "two acknowledged writes share revision {rev}:\n    {other}\n    {r}"
            ));
        }
    }
    let mut writes: Vec<&Record> = records.iter().filter(|r| r.write_rev().is_some()).collect();
    writes.sort_by_key(|r| r.ret);
    let mut lin: Vec<&Record> =
        records.iter().filter(|r| r.is_linearizable_kind() && r.header_rev().is_some()).collect();
    lin.sort_by_key(|r| r.invoke);
    let mut w = 0;
    let mut max_before: Option<&Record> = None;
    for op in lin {
        while w < writes.len() && writes[w].ret < op.invoke {
            if max_before.is_none_or(|m| m.write_rev() < writes[w].write_rev()) {
                max_before = Some(writes[w]);
            }
            w += 1;
        }
        let Some(prior) = max_before else { continue };
        let prior_rev = prior.write_rev().unwrap();
        let rev = op.header_rev().unwrap();
        let bad = if op.write_rev().is_some() { rev <= prior_rev } else { rev < prior_rev };
        if bad && anomalies.len() < 20 {
            anomalies.push(format!(
                "revision went back in real time: a write at revision {prior_rev} returned \
                 before an operation that answered at revision {rev} began:\n    {prior}\n    {op}"
            ));
        }
    }
    anomalies
}

/// A key's state at a revision: (value, mod_revision), or None when absent.
type KeyState = Option<(u64, i64)>;

/// Reads the healed cluster's committed state of `key` at revision `rev`:
/// (value, mod_revision) or None.
async fn state_at(
    kv: &mut logbook_api::etcdserverpb::kv_client::KvClient<Channel>,
    key: usize,
    rev: i64,
) -> Result<Option<(u64, i64)>, String> {
    for _ in 0..5 {
        match kv
            .range(RangeRequest { key: key_name(key).into(), revision: rev, ..Default::default() })
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                return Ok(r.kvs.first().map(|kv| (parse_value(&kv.value), kv.mod_revision)));
            }
            Err(status) => {
                if status.code() == tonic::Code::OutOfRange
                    || status.message().contains("compacted")
                    || status.message().contains("future")
                {
                    return Err(status.message().to_string());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    Err("range kept failing".into())
}

/// Counts for the report.
#[derive(Default, Debug)]
pub struct StateReport {
    pub reads_checked: usize,
    pub serializable_checked: usize,
    pub writes_checked: usize,
    pub anomalies: Vec<String>,
}

/// Every successful read, serializable ones included, must show the committed state at its
/// header revision (a member never serves data newer than what it applied from the
/// committed log, nor anything the cluster later lost), and every acknowledged write must
/// be in the healed cluster's history at its revision (no acknowledged write lost).
pub async fn state_at_revisions(records: &[Record], url: &str, final_rev: i64) -> StateReport {
    let mut report = StateReport::default();
    let Some(mut kv) = connect(url).await else {
        report.anomalies.push(format!("cannot connect to {url} for the final checks"));
        return report;
    };
    let mut cache: HashMap<(usize, i64), Result<KeyState, String>> = HashMap::new();
    for r in records {
        let Some(rev) = r.header_rev() else { continue };
        let expect: Option<Option<(u64, i64)>> = match (&r.kind, &r.outcome) {
            (_, Outcome::Get { value, mod_rev, .. }) => Some(value.map(|v| (v, *mod_rev))),
            (_, Outcome::Cas { succeeded: false, got, got_mod_rev, .. }) => {
                Some(got.map(|v| (v, *got_mod_rev)))
            }
            (Kind::Put { value } | Kind::PutLease { value, .. }, Outcome::Put { .. }) => {
                Some(Some((*value, rev)))
            }
            (Kind::Cas { new, .. }, Outcome::Cas { succeeded: true, .. }) => {
                Some(Some((*new, rev)))
            }
            (_, Outcome::Delete { removed: Some(_), .. }) => Some(None),
            _ => None,
        };
        let Some(expect) = expect else { continue };
        if rev > final_rev {
            report.anomalies.push(format!(
                "answered at revision {rev}, beyond the healed cluster's revision {final_rev}:\n    {r}"
            ));
            continue;
        }
        if let std::collections::hash_map::Entry::Vacant(e) = cache.entry((r.key, rev)) {
            e.insert(state_at(&mut kv, r.key, rev).await);
        }
        match &cache[&(r.key, rev)] {
            Ok(actual) if *actual == expect => {}
            Ok(actual) => report.anomalies.push(format!(
                "key{} at revision {rev}: the healed cluster holds {actual:?} (value, mod_revision) \
                 but the client saw {expect:?}:\n    {r}",
                r.key
            )),
            Err(e) => report
                .anomalies
                .push(format!("cannot read key{} at revision {rev} ({e}) to check:\n    {r}", r.key)),
        }
        match (&r.kind, r.write_rev()) {
            (Kind::Get { serializable: true }, _) => report.serializable_checked += 1,
            (Kind::Get { .. }, _) => report.reads_checked += 1,
            (_, Some(_)) => report.writes_checked += 1,
            _ => report.reads_checked += 1,
        }
    }
    report
}

/// Waits (bounded) until every member has applied `rev`, then compares HashKV at `rev`.
pub async fn hash_kv_equal(urls: &[String], rev: i64) -> Vec<String> {
    let mut hashes = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut got = None;
        while Instant::now() < deadline {
            if let Some(mut kv) = connect(url).await {
                let applied = kv
                    .range(RangeRequest {
                        key: "rb/".into(),
                        serializable: true,
                        ..Default::default()
                    })
                    .await
                    .map(|r| r.into_inner().header.map_or(0, |h| h.revision))
                    .unwrap_or(0);
                if applied >= rev {
                    let endpoint = Channel::from_shared(url.clone())
                        .unwrap()
                        .connect_timeout(Duration::from_secs(1))
                        .timeout(Duration::from_secs(5));
                    if let Ok(Ok(ch)) =
                        tokio::time::timeout(Duration::from_secs(2), endpoint.connect()).await
                        && let Ok(h) = MaintenanceClient::new(ch)
                            .hash_kv(HashKvRequest { revision: rev })
                            .await
                    {
                        let h = h.into_inner();
                        got = Some((h.hash, h.compact_revision));
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        hashes.push((i, got));
    }
    let mut anomalies = Vec::new();
    for (i, h) in &hashes {
        if h.is_none() {
            anomalies.push(format!("m{} never reached revision {rev} or refused HashKV", i + 1));
        }
    }
    let distinct: HashSet<_> = hashes.iter().filter_map(|(_, h)| *h).collect();
    if distinct.len() > 1 {
        anomalies.push(format!("HashKV at revision {rev} differs between members: {hashes:?}"));
    }
    anomalies
}

/// What the watch check did.
pub enum WatchReport {
    /// The Watch service answered Unimplemented: nothing checked.
    Skipped(String),
    Checked {
        events: usize,
        /// Events the watches kept open through the faults received.
        live_events: usize,
        anomalies: Vec<String>,
    },
}

async fn watch_all(url: &str, final_rev: i64) -> Result<Vec<Ev>, tonic::Status> {
    let ch = Channel::from_shared(url.to_string()).unwrap().connect_timeout(Duration::from_secs(1));
    let ch = tokio::time::timeout(Duration::from_secs(2), ch.connect())
        .await
        .map_err(|_| tonic::Status::unavailable("connect timed out"))?
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut client = WatchClient::new(ch);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: "rb/".into(),
            range_end: "rb0".into(),
            start_revision: 1,
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut stream = tokio::time::timeout(
        Duration::from_secs(5),
        client.watch(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
    .await
    .map_err(|_| tonic::Status::deadline_exceeded("watch did not start"))??
    .into_inner();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while events.last().is_none_or(|e: &Ev| e.0 < final_rev) && Instant::now() < deadline {
        let Ok(msg) = tokio::time::timeout(Duration::from_secs(5), stream.message()).await else {
            break;
        };
        let Some(resp) = msg? else { break };
        if resp.canceled {
            return Err(tonic::Status::aborted(format!("watch canceled: {}", resp.cancel_reason)));
        }
        for e in resp.events {
            let kv = e.kv.unwrap_or_default();
            let value = (e.r#type == 0).then_some(kv.value.to_vec());
            events.push((kv.mod_revision, kv.key.to_vec(), value));
        }
    }
    drop(tx);
    Ok(events)
}

/// Watches from revision 1 on every member: events in revision order, no duplicates,
/// identical across members, and equal to the acknowledged writes. Then the watches kept
/// open through the faults: each received exactly that history up to its last event, in
/// order, across its resumptions (no gap, duplicate or stray event), and none was told of
/// progress past an event it had not received.
pub async fn watches(
    urls: &[String],
    records: &[Record],
    final_rev: i64,
    live: &[WatchRun],
) -> WatchReport {
    let mut per_member = Vec::new();
    for url in urls {
        match watch_all(url, final_rev).await {
            Ok(evs) => per_member.push(evs),
            Err(s) if s.code() == tonic::Code::Unimplemented => {
                return WatchReport::Skipped(format!(
                    "Watch service unimplemented ({}); watch checks skipped",
                    s.message()
                ));
            }
            Err(s) => per_member.push(vec![(-1, format!("watch failed: {s}").into_bytes(), None)]),
        }
    }
    let mut anomalies = Vec::new();
    for (i, evs) in per_member.iter().enumerate() {
        for w in evs.windows(2) {
            if w[1].0 < w[0].0 || w[1] == w[0] {
                anomalies.push(format!(
                    "m{}: watch events out of order or duplicated: {:?} then {:?}",
                    i + 1,
                    w[0],
                    w[1]
                ));
                break;
            }
        }
        if evs.last().is_none_or(|e| e.0 < final_rev) {
            anomalies.push(format!(
                "m{}: watch stopped at {:?}, before revision {final_rev}",
                i + 1,
                evs.last()
            ));
        }
        if i > 0 && *evs != per_member[0] {
            let at = evs.iter().zip(&per_member[0]).position(|(a, b)| a != b);
            anomalies.push(format!(
                "m{} and m1 watched different histories ({} vs {} events; first difference at {at:?})",
                i + 1,
                evs.len(),
                per_member[0].len()
            ));
        }
    }
    // Every acknowledged write is an event at its revision with its value.
    let by_rev: BTreeMap<i64, &Ev> = per_member[0].iter().map(|e| (e.0, e)).collect();
    for r in records {
        let Some(rev) = r.write_rev() else { continue };
        let expected_value = match r.kind {
            Kind::Put { value } | Kind::PutLease { value, .. } | Kind::Cas { new: value, .. } => {
                Some(value.to_string().into_bytes())
            }
            _ => None,
        };
        match by_rev.get(&rev) {
            Some(e) if e.1 == key_name(r.key).into_bytes() && e.2 == expected_value => {}
            other => {
                if anomalies.len() < 30 {
                    anomalies.push(format!(
                        "acknowledged write at revision {rev} not watched as such (watched {other:?}):\n    {r}"
                    ));
                }
            }
        }
    }
    let mut live_events = 0;
    for w in live {
        live_events += w.live.events.len();
        anomalies.extend(w.live.errors.iter().cloned());
        anomalies.extend(live_watch(&w.live, &per_member[0]));
        anomalies.extend(watch_progress(w, &per_member[0]));
    }
    WatchReport::Checked { events: per_member[0].len(), live_events, anomalies }
}

/// A watch kept open through the faults against the healed cluster's history `all`.
fn live_watch(w: &LiveWatch, all: &[Ev]) -> Option<String> {
    // Nothing received: nothing to compare.
    let last = w.events.last()?;
    let expected: Vec<&Ev> = all.iter().take_while(|e| e.0 <= last.0).collect();
    let got: Vec<&Ev> = w.events.iter().collect();
    if got == expected {
        return None;
    }
    let at = got
        .iter()
        .zip(&expected)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(expected.len()));
    Some(format!(
        "m{}: the watch kept open through the faults ({} events, resumed {} times) differs \
         from the cluster's history at event {at}: received {:?}, history has {:?}",
        w.member + 1,
        got.len(),
        w.resumed,
        got.get(at),
        expected.get(at)
    ))
}

/// Slack for the lease check: an expiry this much before the lease's end still counts as
/// on time (the leader's and the clients' clocks are the same machine's here; the slack
/// covers scheduling of a loaded machine, not clock drift).
const LEASE_SLACK_NS: u64 = 500_000_000;

/// Leases never expire early, on any member, across leader changes and pauses (etcd's
/// robustness suite checks the same through its model; lease checkpointing exists for
/// it): a lease lives at least its TTL past the grant's sending and past the sending of
/// every keepalive answered with a TTL, so its key may not be seen gone by a linearizable
/// read that returned before then. And a key once seen gone never comes back.
pub fn lease_expiry(lives: &[LeaseLife]) -> Vec<String> {
    let mut anomalies = Vec::new();
    for l in lives {
        let sec = |t: u64| t as f64 / 1e9;
        let mut until = l.grant_invoke + l.ttl as u64 * 1_000_000_000;
        let mut by = "the grant";
        for &(sent, ttl) in &l.keepalives {
            let end = sent + ttl.max(0) as u64 * 1_000_000_000;
            if end > until {
                until = end;
                by = "a keepalive";
            }
        }
        let Some(gone) = l.reads.iter().position(|r| !r.2) else { continue };
        let (_, seen_gone, _) = l.reads[gone];
        if seen_gone + LEASE_SLACK_NS < until {
            anomalies.push(format!(
                "m{}: lease {:x} (TTL {}s) expired early: its key {} was gone by {:.3}s, but {by} \
                 kept the lease alive until at least {:.3}s",
                l.member + 1,
                l.lease,
                l.ttl,
                l.key,
                sec(seen_gone),
                sec(until)
            ));
        }
        if let Some(back) = l.reads[gone..].iter().find(|r| r.2) {
            anomalies.push(format!(
                "m{}: lease {:x}'s key {} was gone by {:.3}s and back at {:.3}s",
                l.member + 1,
                l.lease,
                l.key,
                sec(seen_gone),
                sec(back.1)
            ));
        }
    }
    anomalies
}

/// Progress notifications never claim a revision the watcher has not seen: when one says
/// revision R, every event of the cluster's history `all` at or below R was already
/// received, and no event at or below R comes after it.
pub fn watch_progress(run: &WatchRun, all: &[Ev]) -> Vec<String> {
    let mut anomalies = Vec::new();
    for &(received, rev) in &run.progress {
        let missing = all.get(received).filter(|e| e.0 <= rev);
        let late = run.live.events.get(received).filter(|e| e.0 <= rev);
        if let Some(e) = missing.or(late) {
            anomalies.push(format!(
                "m{}: a progress notification claimed revision {rev} after {received} events, \
                 but the event {e:?} at or below it had not been received",
                run.live.member + 1
            ));
            break;
        }
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: usize, kind: Kind, invoke: u64, ret: u64, outcome: Outcome) -> Record {
        Record { client: 0, member: 0, key, kind, invoke, ret, outcome }
    }

    /// A put whose answer was lost and whose value only a delete saw took effect; the
    /// check used to drop it as "never observed" and then found the delete impossible.
    #[test]
    fn unknown_put_seen_only_by_a_delete_is_linearizable() {
        let h = vec![
            rec(0, Kind::Put { value: 7 }, 0, NEVER, Outcome::Unknown("client timeout".into())),
            rec(0, Kind::Delete, 10, 20, Outcome::Delete { removed: Some(7), rev: 3 }),
            rec(
                0,
                Kind::Get { serializable: false },
                30,
                40,
                Outcome::Get { value: None, mod_rev: 0, rev: 3 },
            ),
        ];
        let report = linearizability(&h);
        assert!(report.anomalies.is_empty(), "{:?}", report.anomalies);
        assert_eq!(report.checked_ops, 3);
    }

    #[test]
    fn live_watch_must_be_the_history_up_to_its_last_event() {
        let ev =
            |rev: i64, v: Option<&str>| (rev, b"rb/0".to_vec(), v.map(|v| v.as_bytes().to_vec()));
        let all = vec![ev(2, Some("1")), ev(3, Some("2")), ev(4, None), ev(5, Some("3"))];
        let w = |events: Vec<Ev>| LiveWatch { member: 0, events, resumed: 1, ..Default::default() };
        assert_eq!(live_watch(&w(vec![]), &all), None);
        assert_eq!(live_watch(&w(all[..3].to_vec()), &all), None);
        assert_eq!(live_watch(&w(all.clone()), &all), None);
        // A gap (as a resumption at the wrong revision would leave).
        assert!(live_watch(&w(vec![all[0].clone(), all[2].clone()]), &all).is_some());
        // A duplicate (a resumption at the last revision instead of the next).
        assert!(
            live_watch(&w(vec![all[0].clone(), all[1].clone(), all[1].clone()]), &all).is_some()
        );
        // A value the history does not hold at that revision.
        assert!(live_watch(&w(vec![all[0].clone(), ev(3, Some("9"))]), &all).is_some());
    }

    #[test]
    fn lease_gone_before_its_ttl_is_caught() {
        const S: u64 = 1_000_000_000;
        let life = |keepalives: Vec<(u64, i64)>, reads: Vec<(u64, u64, bool)>| LeaseLife {
            member: 0,
            lease: 7,
            ttl: 5,
            key: "rl/m1/0".into(),
            grant_invoke: 0,
            keepalives,
            reads,
        };
        // Kept alive at 4s: alive until 9s; gone at 10s is on time.
        let ok = life(vec![(4 * S, 5)], vec![(S, S + 1, true), (10 * S, 10 * S + 1, false)]);
        assert!(lease_expiry(&[ok]).is_empty());
        // Gone at 7s after a keepalive at 4s.
        let early = life(vec![(4 * S, 5)], vec![(7 * S, 7 * S + 1, false)]);
        assert_eq!(lease_expiry(&[early]).len(), 1);
        // Gone at 3s with no keepalive: before the grant's TTL.
        let early = life(vec![], vec![(3 * S, 3 * S + 1, false)]);
        assert_eq!(lease_expiry(&[early]).len(), 1);
        // Seen gone, then present again.
        let back = life(vec![], vec![(6 * S, 6 * S, false), (7 * S, 7 * S, true)]);
        assert_eq!(lease_expiry(&[back]).len(), 1);
    }

    #[test]
    fn progress_beyond_the_received_events_is_caught() {
        let ev = |rev: i64| (rev, b"rb/0".to_vec(), Some(b"1".to_vec()));
        let all = vec![ev(2), ev(3), ev(5)];
        let run = |events: Vec<Ev>, progress: Vec<(usize, i64)>| WatchRun {
            live: LiveWatch { member: 0, events, ..Default::default() },
            progress,
        };
        // After 2 events, progress at 4: right (the next event is at 5).
        assert!(watch_progress(&run(all.clone(), vec![(2, 4), (3, 9)]), &all).is_empty());
        // After 1 event, progress at 3: event 3 was not received yet.
        assert_eq!(watch_progress(&run(all.clone(), vec![(1, 3)]), &all).len(), 1);
        // Past the end of what the watch received (its member lagged the history).
        assert_eq!(watch_progress(&run(all[..1].to_vec(), vec![(1, 5)]), &all).len(), 1);
    }

    #[test]
    fn delete_of_a_value_nobody_wrote_is_caught() {
        let h = vec![
            rec(0, Kind::Put { value: 7 }, 0, 5, Outcome::Put { rev: 2 }),
            rec(0, Kind::Delete, 10, 20, Outcome::Delete { removed: Some(8), rev: 3 }),
        ];
        assert_eq!(linearizability(&h).anomalies.len(), 1);
        // An unknown put of 8 that began only after the delete returned cannot explain it.
        let h = vec![
            rec(0, Kind::Delete, 10, 20, Outcome::Delete { removed: Some(8), rev: 3 }),
            rec(0, Kind::Put { value: 8 }, 30, NEVER, Outcome::Unknown("client timeout".into())),
        ];
        assert_eq!(linearizability(&h).anomalies.len(), 1);
    }
}
