//! `txn-put`: one Txn per request, no compares, `ops` puts of distinct keys in
//! its success branch (like etcd's `benchmark txn-put`).

use bytes::Bytes;
use logbook_api::etcdserverpb::kv_client::KvClient;
use logbook_api::etcdserverpb::{PutRequest, RequestOp, TxnRequest, request_op};
use tonic::transport::Channel;

use crate::client::Pool;
use crate::driver::Workload;
use crate::keys::{KeyGen, Rng};

/// Transactions of `ops` puts.
pub struct TxnPut {
    pool: Pool,
    keys: KeyGen,
    value: Bytes,
    ops: usize,
}

impl TxnPut {
    /// Fails when the key space is smaller than `ops` (a txn may not put one
    /// key twice).
    pub fn new(pool: Pool, keys: KeyGen, value: Bytes, ops: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(ops >= 1, "--txn-ops must be at least 1");
        anyhow::ensure!(
            keys.space() >= ops as u64,
            "--key-space-size ({}) must be at least --txn-ops ({ops})",
            keys.space()
        );
        Ok(TxnPut { pool, keys, value, ops })
    }
}

impl Workload for TxnPut {
    type State = (KvClient<Channel>, Rng);

    fn classes(&self) -> Vec<&'static str> {
        vec!["txn-put"]
    }

    fn state(&self, client: usize) -> Self::State {
        (self.pool.kv(client), Rng::new(client as u64 + 1))
    }

    async fn call(&self, (kv, rng): &mut Self::State, seq: u64) -> Result<usize, tonic::Status> {
        let first = self.keys.pick(seq * self.ops as u64, rng);
        let success = (0..self.ops as u64)
            .map(|i| RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: self.keys.key(first + i),
                    value: self.value.clone(),
                    ..Default::default()
                })),
            })
            .collect();
        kv.txn(TxnRequest { compare: vec![], success, failure: vec![] }).await?;
        Ok(0)
    }
}
