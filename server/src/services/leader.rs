//! A connection to the leader's peer port, for the questions only the
//! leader can answer (lease keep-alives and remaining TTLs: lease deadlines
//! are kept on the leader alone) and the membership changes a follower
//! hands it. Redialled when the leader changes.

use std::sync::Arc;

use logbook_api::logbookpb::peer_client::PeerClient;
use logbook_api::logbookpb::{
    ConfChangeForward, ConfChangeForwardResponse, LeaseQueryRequest, LeaseQueryResponse,
};
use tonic::transport::Channel;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::state::engine_cell::EngineCell;
use crate::status::RaftStatus;

/// The leader's peer client, cached per leader.
pub struct LeaderClient {
    cfg: Arc<Config>,
    status: Arc<RaftStatus>,
    slot: tokio::sync::Mutex<Option<(u64, PeerClient<Channel>)>>,
}

impl LeaderClient {
    pub fn new(cfg: Arc<Config>, status: Arc<RaftStatus>) -> Self {
        LeaderClient { cfg, status, slot: tokio::sync::Mutex::new(None) }
    }

    /// A client of the leader's peer service; `engine` holds the members'
    /// peer URLs.
    async fn client(&self, engine: &EngineCell) -> Result<PeerClient<Channel>> {
        let leader = self.status.leader().ok_or(Error::NoLeader)?;
        let mut slot = self.slot.lock().await;
        if slot.as_ref().map(|(id, _)| *id) != Some(leader) {
            let members = crate::state::membership::load_members(&engine.get());
            let urls = members
                .into_iter()
                .find(|m| m.id == leader)
                .map(|m| m.peer_urls)
                .unwrap_or_default();
            let mut client = None;
            for url in urls {
                if let Ok(ch) = self.cfg.peer_dialer.connect(&url).await {
                    client = Some(PeerClient::new(ch));
                    break;
                }
            }
            *slot = Some((leader, client.ok_or(Error::NoLeader)?));
        }
        let (_, client) = slot.as_ref().expect("filled above");
        Ok(client.clone())
    }

    /// Hands a membership change to the leader and waits for its answer
    /// (the caller bounds the wait). The leader's refusal comes back as
    /// it said it; [`Error::NotLeader`] and [`Error::NoLeader`] mean the
    /// change was not proposed and may be asked of the next leader.
    pub async fn conf_change(
        &self,
        engine: &EngineCell,
        req: ConfChangeForward,
    ) -> Result<ConfChangeForwardResponse> {
        let mut client = self.client(engine).await?;
        match client.conf_change(req).await {
            Ok(resp) => Ok(resp.into_inner()),
            Err(status) if status.message() == Error::NotLeader.to_string() => {
                Err(Error::NotLeader)
            }
            Err(status) if status.message().starts_with("etcdserver: ") => {
                Err(Error::Remote { code: status.code(), message: status.message().to_string() })
            }
            Err(_) => {
                // Not an answer of the leader's: it could not be reached.
                *self.slot.lock().await = None;
                Err(Error::NoLeader)
            }
        }
    }

    /// Asks the leader's peer service about a lease (keep-alive or TTL);
    /// `engine` holds the members' peer URLs.
    pub async fn lease_query(
        &self,
        engine: &EngineCell,
        req: LeaseQueryRequest,
    ) -> Result<LeaseQueryResponse> {
        let mut client = self.client(engine).await?;
        match tokio::time::timeout(self.cfg.request_timeout(), client.lease_query(req)).await {
            Ok(Ok(resp)) => {
                let resp = resp.into_inner();
                if !resp.leader {
                    return Err(Error::LeaderChanged);
                }
                Ok(resp)
            }
            Ok(Err(_)) => {
                *self.slot.lock().await = None;
                Err(Error::LeaderChanged)
            }
            Err(_) => Err(Error::Timeout),
        }
    }
}
