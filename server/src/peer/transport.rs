//! The peer transport: Raft messages go to each peer on its Raft lane
//! ([`crate::peer::lane::Link`]), written by the Raft thread itself and never
//! blocking it. A slow or dead peer only loses its own messages (Raft
//! retransmits); the others keep flowing. Snapshots travel on their own
//! gRPC call, in chunks, from a task per peer, so a large one never holds up
//! heartbeats.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use logbook_api::logbookpb::peer_client::PeerClient;
use logbook_api::logbookpb::{HelloRequest, HelloResponse, SnapshotChunk};
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use tokio::sync::mpsc;
use tonic::transport::Channel;

use super::Sink;
use crate::peer::lane::Link;
use crate::state::membership::REMOVED_MESSAGE;
use crate::tls::PeerDialer;

/// Snapshot data is sent in chunks of this size.
const SNAPSHOT_CHUNK: usize = 1 << 20;
/// Largest peer message either side accepts (snapshots are chunked).
pub const MAX_PEER_MESSAGE: usize = 64 << 20;

struct Peer {
    link: Arc<Link>,
    snapshots: mpsc::Sender<Message>,
}

/// Sends Raft messages to peers.
pub struct Transport {
    peers: HashMap<u64, Peer>,
    runtime: tokio::runtime::Handle,
    me: LocalIdentity,
    raft: Sink,
}

/// Who we are, for the peer tasks.
#[derive(Clone)]
pub struct LocalIdentity {
    pub member_id: u64,
    pub cluster_id: u64,
    /// Dials peer URLs: plainly, or with the peer TLS files for https.
    pub dialer: Arc<PeerDialer>,
    /// `--raft-read-timeout`/`--raft-write-timeout` for the Raft lanes.
    pub timeouts: crate::peer::lane::Timeouts,
}

impl LocalIdentity {
    /// Whether the member that answered our hello at `url` is `peer` of our
    /// cluster; logs why not.
    pub(crate) fn accepts(&self, peer: u64, url: &str, resp: &HelloResponse) -> bool {
        if resp.cluster_id != self.cluster_id {
            tracing::error!(
                peer = format!("{peer:x}"),
                theirs = format!("{:x}", resp.cluster_id),
                ours = format!("{:x}", self.cluster_id),
                "peer belongs to another cluster; not talking to it"
            );
            return false;
        }
        if resp.member_id != peer {
            tracing::error!(
                expected = format!("{peer:x}"),
                found = format!("{:x}", resp.member_id),
                url,
                "a different member answers at this peer URL"
            );
            return false;
        }
        true
    }
}

impl Transport {
    /// Starts a link and a snapshot task per peer. `peers` maps member IDs
    /// to peer URLs.
    pub fn start(
        runtime: &tokio::runtime::Handle,
        me: LocalIdentity,
        peers: impl IntoIterator<Item = (u64, Vec<String>)>,
        raft: Sink,
    ) -> std::io::Result<Transport> {
        let mut t = Transport { peers: HashMap::new(), runtime: runtime.clone(), me, raft };
        for (id, urls) in peers {
            t.add_peer(id, urls)?;
        }
        Ok(t)
    }

    /// Starts talking to a member (added, or with new peer URLs).
    pub fn add_peer(&mut self, id: u64, urls: Vec<String>) -> std::io::Result<()> {
        if id == self.me.member_id {
            return Ok(());
        }
        self.remove_peer(id);
        let link = Link::start(self.me.clone(), id, urls.clone(), self.raft.clone())?;
        let (stx, srx) = mpsc::channel(4);
        self.runtime.spawn(snapshot_task(self.me.clone(), id, urls, srx, self.raft.clone()));
        self.peers.insert(id, Peer { link, snapshots: stx });
        Ok(())
    }

    /// Stops talking to a removed member (its link closes, its snapshot
    /// task ends with its queue).
    pub fn remove_peer(&mut self, id: u64) {
        if let Some(peer) = self.peers.remove(&id) {
            peer.link.close();
        }
    }

    /// Sends messages to their peers without blocking: all of one peer's in
    /// one write.
    pub fn send(&self, messages: Vec<Message>) {
        let mut others = 0;
        for (id, peer) in &self.peers {
            let mut mine = messages
                .iter()
                .filter(|m| m.to == *id && m.get_msg_type() != MessageType::MsgSnapshot)
                .peekable();
            if mine.peek().is_some() {
                peer.link.send(mine);
            }
        }
        for m in messages {
            match self.peers.get(&m.to) {
                Some(peer) if m.get_msg_type() == MessageType::MsgSnapshot => {
                    if peer.snapshots.try_send(m).is_err() {
                        tracing::debug!("a snapshot is already on its way; this one dropped");
                    }
                }
                Some(_) => {}
                None => others += 1,
            }
        }
        if others > 0 {
            tracing::debug!(count = others, "messages for unknown peers dropped");
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        for peer in self.peers.values() {
            peer.link.close();
        }
    }
}

/// Connects to `peer` and checks it is who we expect. When the peer says this member was
/// removed from the cluster, tells the Raft loop to stop (etcd stops on 410 Gone).
async fn connect(
    me: &LocalIdentity,
    peer: u64,
    urls: &[String],
    raft: &Sink,
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
                return me.accepts(peer, url, &resp.into_inner()).then_some(client);
            }
            Err(status)
                if status.code() == tonic::Code::FailedPrecondition
                    && status.message() == REMOVED_MESSAGE =>
            {
                tracing::error!(peer = format!("{peer:x}"), "{REMOVED_MESSAGE}; stopping");
                raft.stop();
                return None;
            }
            Err(status) => {
                tracing::debug!(peer = format!("{peer:x}"), %status, "peer hello failed");
            }
        }
    }
    None
}

/// Test-only (`failpoints` feature): `LOGBOOK_FAILPOINT_PEER_ROUTES=URL=HOST:PORT,...` makes
/// this member dial HOST:PORT wherever a peer advertises URL, so the robustness harness can put
/// a fault-injecting proxy on each directed link. The `Hello` check still runs end to end.
#[cfg(feature = "failpoints")]
pub(crate) fn failpoint_routes(urls: &[String]) -> Vec<String> {
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
    raft: Sink,
) {
    while let Some(mut msg) = queue.recv().await {
        let data: Bytes = std::mem::take(&mut msg.mut_snapshot().data);
        let ok = match connect(&me, peer, &urls, &raft).await {
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
        raft.snapshot_status(peer, ok);
    }
}
