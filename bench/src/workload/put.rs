//! `put`: one Put per request, random or sequential keys, a fixed value.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use logbook_api::etcdserverpb::PutRequest;
use logbook_api::etcdserverpb::kv_client::KvClient;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::client::Pool;
use crate::driver::Workload;
use crate::keys::{KeyGen, Rng};

/// Puts keys of `keys` with `value`.
pub struct Put {
    pool: Pool,
    keys: KeyGen,
    value: Bytes,
    /// When set, the first 8 bytes of every value are the send time in
    /// nanoseconds since this instant (big endian), so watchers can measure
    /// delivery latency.
    stamp: Option<Instant>,
}

impl Put {
    pub fn new(pool: Pool, keys: KeyGen, value: Bytes) -> Self {
        Put { pool, keys, value, stamp: None }
    }

    /// Stamps each value with its send time relative to `epoch`.
    pub fn stamped(mut self, epoch: Instant) -> Self {
        self.stamp = Some(epoch);
        self
    }
}

/// Reads a stamp written by a stamped [`Put`]: the time since `epoch` at send.
pub fn read_stamp(value: &[u8]) -> Option<Duration> {
    let b: [u8; 8] = value.get(..8)?.try_into().ok()?;
    Some(Duration::from_nanos(u64::from_be_bytes(b)))
}

impl Workload for Put {
    /// A client's connection, random numbers and key buffer.
    type State = (KvClient<Channel>, Rng, Vec<u8>);

    fn classes(&self) -> Vec<&'static str> {
        vec!["put"]
    }

    fn state(&self, client: usize) -> Self::State {
        (self.pool.kv(client), Rng::new(client as u64 + 1), Vec::new())
    }

    async fn call(
        &self,
        (kv, rng, buf): &mut Self::State,
        seq: u64,
    ) -> Result<usize, tonic::Status> {
        let key = self.keys.key_in(self.keys.pick(seq, rng), buf);
        let value = match self.stamp {
            None => self.value.clone(),
            Some(epoch) => {
                let mut v = BytesMut::with_capacity(self.value.len().max(8));
                v.put_u64(epoch.elapsed().as_nanos() as u64);
                v.put_slice(self.value.get(8..).unwrap_or_default());
                v.freeze()
            }
        };
        kv.put(PutRequest { key, value, ..Default::default() }).await?;
        Ok(0)
    }
}
