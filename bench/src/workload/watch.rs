//! `watch`: prefix watchers stay open while clients put keys under the
//! prefix; every put is stamped with its send time, so each watcher measures
//! event delivery latency (put sent → event received).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use logbook_api::etcdserverpb::{WatchCreateRequest, WatchRequest, watch_request};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::put::read_stamp;
use crate::client::Pool;
use crate::stats::{Recorder, Summary};

/// Open watch streams and what they have received.
pub struct Watchers {
    senders: Vec<mpsc::Sender<WatchRequest>>,
    readers: Vec<JoinHandle<()>>,
    events: Arc<AtomicU64>,
    latency: Arc<Recorder>,
}

impl Watchers {
    /// Opens `watchers` watchers on `[key, range_end)` spread over `streams`
    /// streams, and waits until the server has created every one.
    /// With `epoch`, values are stamped (see [`Put::stamped`](super::put::Put::stamped))
    /// and delivery latencies are measured against it.
    pub async fn open(
        pool: &Pool,
        key: Bytes,
        range_end: Bytes,
        watchers: usize,
        streams: usize,
        epoch: Option<Instant>,
    ) -> Result<Watchers> {
        let streams = streams.clamp(1, watchers.max(1));
        let events = Arc::new(AtomicU64::new(0));
        let latency = Arc::new(Recorder::default());
        let mut senders = Vec::new();
        let mut readers = Vec::new();
        for s in 0..streams {
            let n = watchers / streams + usize::from(s < watchers % streams);
            let (tx, rx) = mpsc::channel(n.max(1) + 8);
            for _ in 0..n {
                let create = WatchCreateRequest {
                    key: key.clone(),
                    range_end: range_end.clone(),
                    ..Default::default()
                };
                let req = WatchRequest {
                    request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
                };
                tx.send(req).await.context("watch request queue closed")?;
            }
            // The server answers (and sends headers) once it has our creates.
            let mut stream = tokio::time::timeout(
                Duration::from_secs(10),
                pool.watch(s).watch(ReceiverStream::new(rx)),
            )
            .await
            .context("watch stream not opened within 10s")?
            .context("opening a watch stream")?
            .into_inner();
            let mut created = 0;
            while created < n {
                let msg = tokio::time::timeout(Duration::from_secs(10), stream.message())
                    .await
                    .context("watch not created within 10s")?
                    .context("watch stream failed")?;
                let Some(msg) = msg else {
                    bail!("watch stream closed before the watchers were created")
                };
                if msg.canceled {
                    bail!("watch canceled: {}", msg.cancel_reason);
                }
                created += usize::from(msg.created);
            }
            let (events, latency) = (events.clone(), latency.clone());
            readers.push(tokio::spawn(async move {
                while let Ok(Some(msg)) = stream.message().await {
                    for ev in msg.events {
                        let stamp = ev.kv.as_ref().and_then(|kv| read_stamp(&kv.value));
                        if let (Some(epoch), Some(stamp)) = (epoch, stamp) {
                            latency.record(s, epoch.elapsed().saturating_sub(stamp));
                        }
                        events.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
            senders.push(tx);
        }
        Ok(Watchers { senders, readers, events, latency })
    }

    /// Events received so far (over all watchers).
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Waits (at most `timeout`) until `expected` events have arrived;
    /// returns how many did.
    pub async fn wait_for(&self, expected: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        while self.events() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.events()
    }

    /// Delivery latencies as a summary named `name`.
    pub fn summary(&self, name: &str, elapsed: Duration) -> Summary {
        Summary::from_histogram(name, &self.latency.merged(), 0, elapsed)
    }

    /// Closes every stream.
    pub fn close(self) {
        drop(self.senders);
        for r in self.readers {
            r.abort();
        }
    }
}
