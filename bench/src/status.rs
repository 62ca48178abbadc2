//! Small Maintenance queries the reports quote.

use anyhow::Result;
use logbook_api::etcdserverpb::StatusRequest;

use crate::client::{Pool, connect_one};

/// The server version a member reports in its Status.
pub async fn version(endpoint: &str) -> Result<String> {
    let pool = Pool::from_channel(connect_one(&crate::client::endpoint_url(endpoint)).await?);
    Ok(pool.maintenance(0).status(StatusRequest {}).await?.into_inner().version)
}
