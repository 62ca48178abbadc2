//! `range`: one Range per request: a single key, or up to `limit` keys from
//! a random key to the end of the prefix; linearizable or serializable.

use logbook_api::etcdserverpb::RangeRequest;
use logbook_api::etcdserverpb::kv_client::KvClient;
use tonic::transport::Channel;

use crate::cli::Consistency;
use crate::client::Pool;
use crate::driver::Workload;
use crate::keys::{KeyGen, Rng};

/// Reads keys of `keys`.
pub struct Range {
    pub pool: Pool,
    pub keys: KeyGen,
    pub limit: i64,
    pub consistency: Consistency,
}

impl Workload for Range {
    type State = (KvClient<Channel>, Rng);

    fn classes(&self) -> Vec<&'static str> {
        vec!["range"]
    }

    fn state(&self, client: usize) -> Self::State {
        (self.pool.kv(client), Rng::new(client as u64 + 1))
    }

    async fn call(&self, (kv, rng): &mut Self::State, seq: u64) -> Result<usize, tonic::Status> {
        let key = self.keys.key(self.keys.pick(seq, rng));
        let (range_end, limit) = if self.limit > 0 {
            (self.keys.range_end(), self.limit)
        } else {
            (Default::default(), 0)
        };
        let req = RangeRequest {
            key,
            range_end,
            limit,
            serializable: self.consistency == Consistency::Serializable,
            ..Default::default()
        };
        kv.range(req).await?;
        Ok(0)
    }
}
