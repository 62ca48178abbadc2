//! A connection to the leader's peer port, for the questions only the
//! leader can answer (lease keep-alives and remaining TTLs: lease deadlines
//! are kept on the leader alone). Redialled when the leader changes.

use std::sync::Arc;

use logbook_api::logbookpb::peer_client::PeerClient;
use logbook_api::logbookpb::{LeaseQueryRequest, LeaseQueryResponse};
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

    /// Asks the leader's peer service about a lease (keep-alive or TTL);
    /// `engine` holds the members' peer URLs.
    pub async fn lease_query(
        &self,
        engine: &EngineCell,
        req: LeaseQueryRequest,
    ) -> Result<LeaseQueryResponse> {
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
        let (_, client) = slot.as_mut().expect("filled above");
        let mut client = client.clone();
        drop(slot);
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
