//! The peer transport: one long-lived gRPC stream to each peer, fed by a
//! bounded queue the Raft thread never blocks on. A slow or dead peer only
//! loses its own messages (Raft retransmits); the others keep flowing.
//!
//! Each peer has a task that connects (with backoff), checks the peer
//! belongs to this cluster, then forwards queued messages in batches: every
//! message queued while the last batch was in flight goes into the next one.
//! Snapshots travel on their own RPC, in chunks, so a large one never holds
//! up heartbeats.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crossbeam::channel::Sender;
use logbook_api::logbookpb::peer_client::PeerClient;
use logbook_api::logbookpb::{HelloRequest, RaftBatch, SnapshotChunk};
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::membership::REMOVED_MESSAGE;
use crate::node::NodeMsg;
use crate::tls::PeerDialer;

/// Messages waiting for one peer beyond this are dropped.
const QUEUE_DEPTH: usize = 8192;
/// At most this many messages in one batch.
const MAX_BATCH: usize = 512;
/// Snapshot data is sent in chunks of this size.
const SNAPSHOT_CHUNK: usize = 1 << 20;
/// Largest peer message either side accepts (snapshots are chunked).
pub const MAX_PEER_MESSAGE: usize = 64 << 20;

struct Peer {
    messages: mpsc::Sender<Message>,
    snapshots: mpsc::Sender<Message>,
}

/// Sends Raft messages to peers.
pub struct Transport {
    peers: HashMap<u64, Peer>,
    runtime: tokio::runtime::Handle,
    me: LocalIdentity,
    inbox: Sender<NodeMsg>,
}

/// Who we are, for the peer tasks.
#[derive(Clone)]
pub struct LocalIdentity {
    pub member_id: u64,
    pub cluster_id: u64,
    /// Dials peer URLs: plainly, or with the peer TLS files for https.
    pub dialer: Arc<PeerDialer>,
}

impl Transport {
    /// Starts a task per peer on `runtime`. `peers` maps member IDs to peer URLs.
    pub fn start(
        runtime: &tokio::runtime::Handle,
        me: LocalIdentity,
        peers: impl IntoIterator<Item = (u64, Vec<String>)>,
        inbox: Sender<NodeMsg>,
    ) -> Transport {
        let mut t = Transport { peers: HashMap::new(), runtime: runtime.clone(), me, inbox };
        for (id, urls) in peers {
            t.add_peer(id, urls);
        }
        t
    }

    /// Starts talking to a member (added, or with new peer URLs).
    pub fn add_peer(&mut self, id: u64, urls: Vec<String>) {
        if id == self.me.member_id {
            return;
        }
        self.remove_peer(id);
        let (mtx, mrx) = mpsc::channel(QUEUE_DEPTH);
        let (stx, srx) = mpsc::channel(4);
        self.runtime.spawn(stream_task(self.me.clone(), id, urls.clone(), mrx, self.inbox.clone()));
        self.runtime.spawn(snapshot_task(self.me.clone(), id, urls, srx, self.inbox.clone()));
        self.peers.insert(id, Peer { messages: mtx, snapshots: stx });
    }

    /// Stops talking to a removed member (its tasks end with their queues).
    pub fn remove_peer(&mut self, id: u64) {
        self.peers.remove(&id);
    }

    /// Queues messages for their peers without blocking.
    pub fn send(&self, messages: Vec<Message>) {
        for m in messages {
            let Some(peer) = self.peers.get(&m.to) else {
                tracing::debug!(to = format!("{:x}", m.to), "message for an unknown peer dropped");
                continue;
            };
            let queue = if m.get_msg_type() == MessageType::MsgSnapshot {
                &peer.snapshots
            } else {
                &peer.messages
            };
            if queue.try_send(m).is_err() {
                tracing::debug!("peer queue full; message dropped for raft to retransmit");
            }
        }
    }
}

/// Connects to `peer` and checks it is who we expect. When the peer says this member was
/// removed from the cluster, tells the Raft loop to stop (etcd stops on 410 Gone).
async fn connect(
    me: &LocalIdentity,
    peer: u64,
    urls: &[String],
    inbox: &Sender<NodeMsg>,
) -> Option<PeerClient<Channel>> {
    #[cfg(feature = "failpoints")]
    let routed = failpoint_routes(urls);
    #[cfg(feature = "failpoints")]
    let urls = &routed[..];
    for url in urls {
        let channel = match me.dialer.connect(url).await {
            Ok(channel) => channel,
            Err(e) => {
                tracing::debug!(peer = format!("{peer:x}"), error = %e, "dialing peer failed");
                continue;
            }
        };
        let mut client = PeerClient::new(channel)
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE);
        match client
            .hello(HelloRequest { cluster_id: me.cluster_id, member_id: me.member_id })
            .await
        {
            Ok(resp) => {
                let resp = resp.into_inner();
                if resp.cluster_id != me.cluster_id {
                    tracing::error!(
                        peer = format!("{peer:x}"),
                        theirs = format!("{:x}", resp.cluster_id),
                        ours = format!("{:x}", me.cluster_id),
                        "peer belongs to another cluster; not talking to it"
                    );
                    return None;
                }
                if resp.member_id != peer {
                    tracing::error!(
                        expected = format!("{peer:x}"),
                        found = format!("{:x}", resp.member_id),
                        url,
                        "a different member answers at this peer URL"
                    );
                    return None;
                }
                return Some(client);
            }
            Err(status)
                if status.code() == tonic::Code::FailedPrecondition
                    && status.message() == REMOVED_MESSAGE =>
            {
                tracing::error!(peer = format!("{peer:x}"), "{REMOVED_MESSAGE}; stopping");
                let _ = inbox.send(NodeMsg::Stop);
                return None;
            }
            Err(status) => {
                tracing::debug!(peer = format!("{peer:x}"), %status, "peer hello failed");
            }
        }
    }
    None
}

async fn stream_task(
    me: LocalIdentity,
    peer: u64,
    urls: Vec<String>,
    mut queue: mpsc::Receiver<Message>,
    inbox: Sender<NodeMsg>,
) {
    let mut backoff = Duration::from_millis(50);
    let mut was_up = false;
    loop {
        let Some(mut client) = connect(&me, peer, &urls, &inbox).await else {
            if was_up {
                tracing::warn!(peer = format!("{peer:x}"), "lost connection to peer");
                was_up = false;
            }
            let _ = inbox.send(NodeMsg::Unreachable(peer));
            // Messages queued for an unreachable peer are stale by the time it
            // is back; Raft resends what matters.
            while queue.try_recv().is_ok() {}
            if queue.is_closed() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
            continue;
        };
        if !was_up {
            tracing::info!(peer = format!("{peer:x}"), "connected to peer");
            was_up = true;
        }
        backoff = Duration::from_millis(50);

        let (btx, brx) = mpsc::channel::<RaftBatch>(16);
        let call = tokio::spawn(async move {
            client.raft_stream(tokio_stream::wrappers::ReceiverStream::new(brx)).await
        });
        loop {
            let Some(first) = queue.recv().await else {
                call.abort();
                return;
            };
            let mut messages = Vec::with_capacity(8);
            messages.push(encode(&first));
            while messages.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(m) => messages.push(encode(&m)),
                    Err(_) => break,
                }
            }
            if btx.send(RaftBatch { from: me.member_id, messages }).await.is_err()
                || call.is_finished()
            {
                break;
            }
        }
        call.abort();
        let _ = inbox.send(NodeMsg::Unreachable(peer));
    }
}

/// Test-only (`failpoints` feature): `LOGBOOK_FAILPOINT_PEER_ROUTES=URL=HOST:PORT,...` makes
/// this member dial HOST:PORT wherever a peer advertises URL, so the robustness harness can put
/// a fault-injecting proxy on each directed link. The `Hello` check still runs end to end.
#[cfg(feature = "failpoints")]
fn failpoint_routes(urls: &[String]) -> Vec<String> {
    let Ok(routes) = std::env::var("LOGBOOK_FAILPOINT_PEER_ROUTES") else {
        return urls.to_vec();
    };
    urls.iter()
        .map(|url| {
            routes
                .split(',')
                .filter_map(|r| r.split_once('='))
                .find(|(from, _)| from == url)
                .map_or_else(
                    || url.clone(),
                    |(_, to)| {
                        let scheme = if url.starts_with("https://") { "https" } else { "http" };
                        format!("{scheme}://{to}")
                    },
                )
        })
        .collect()
}

fn encode(m: &Message) -> Bytes {
    Bytes::from(m.write_to_bytes().expect("raft messages always encode"))
}

async fn snapshot_task(
    me: LocalIdentity,
    peer: u64,
    urls: Vec<String>,
    mut queue: mpsc::Receiver<Message>,
    inbox: Sender<NodeMsg>,
) {
    while let Some(mut msg) = queue.recv().await {
        let data: Bytes = std::mem::take(&mut msg.mut_snapshot().data);
        let ok = match connect(&me, peer, &urls, &inbox).await {
            Some(mut client) => {
                let total = data.len() as u64;
                let head =
                    SnapshotChunk { message: encode(&msg), data: Bytes::new(), total_bytes: total };
                let mut chunks = vec![head];
                let mut at = 0;
                while at < data.len() {
                    let end = (at + SNAPSHOT_CHUNK).min(data.len());
                    chunks.push(SnapshotChunk {
                        message: Bytes::new(),
                        data: data.slice(at..end),
                        total_bytes: 0,
                    });
                    at = end;
                }
                match client.send_snapshot(tokio_stream::iter(chunks)).await {
                    Ok(ack) => ack.into_inner().received_bytes == total,
                    Err(status) => {
                        tracing::warn!(peer = format!("{peer:x}"), %status, "sending snapshot failed");
                        false
                    }
                }
            }
            None => false,
        };
        tracing::info!(peer = format!("{peer:x}"), ok, bytes = data.len(), "snapshot sent");
        let _ = inbox.send(NodeMsg::SnapshotStatus(peer, ok));
    }
}
