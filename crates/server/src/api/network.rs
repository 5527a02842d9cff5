//! Egress rules: the `network` of `POST /sandboxes` and `PUT /sandboxes/{id}/network` (E2B's
//! `allowOut` / `denyOut`), turned into the engine's [`Egress`]. Domain names in `allowOut` are
//! resolved here, when the rules are set: the sandbox may connect to the addresses they had then.

use super::error::ApiError;
use super::extract::{JsonBody, SandboxId};
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use sandbank_engine::egress::{parse_net, Egress};
use sandbank_protocol::rest::SandboxNetwork;
use std::time::Duration;

/// How long resolving one domain of `allowOut` may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The rules `network` asks for; a bad entry is a 400 naming it.
pub async fn egress_of(network: Option<&SandboxNetwork>) -> Result<Egress, ApiError> {
    let Some(network) = network else { return Ok(Egress::default()) };
    let mut rules = Egress::default();
    for entry in network.deny_out.iter().flatten() {
        let net = parse_net(entry).ok_or_else(|| {
            ApiError::BadRequest(format!("Invalid denyOut entry {entry:?}: must be an IP address or a CIDR block"))
        })?;
        rules.deny.push(net);
    }
    for entry in network.allow_out.iter().flatten() {
        match parse_net(entry) {
            Some(net) => rules.allow.push(net),
            None => rules.allow.extend(resolve(entry).await?),
        }
    }
    Ok(rules)
}

/// The addresses of the domain `name`, as networks of one address.
async fn resolve(name: &str) -> Result<Vec<ipnet::IpNet>, ApiError> {
    let bad = |why: &str| ApiError::BadRequest(format!("Invalid allowOut entry {name:?}: {why}"));
    if name.starts_with("*.") {
        return Err(bad("wildcard domains are not supported by sandbank serve (name the domains, or give addresses)"));
    }
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
        return Err(bad("must be an IP address, a CIDR block or a domain name"));
    }
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, 0)))
        .await
        .map_err(|_| bad("the domain did not resolve in time"))?
        .map_err(|e| bad(&format!("the domain does not resolve ({e})")))?;
    let mut nets: Vec<ipnet::IpNet> = found.map(|a| ipnet::IpNet::from(a.ip())).collect();
    nets.sort();
    nets.dedup();
    Ok(nets)
}

/// `PUT /sandboxes/{id}/network`: replaces the sandbox's egress rules (a field left out clears
/// them); 204; 409 while it is paused.
pub async fn update(
    State(state): State<AppState>,
    SandboxId(id): SandboxId,
    JsonBody(body): JsonBody<SandboxNetwork>,
) -> Result<StatusCode, ApiError> {
    state.registry.get(&id).ok_or_else(|| ApiError::SandboxNotFound(id.clone()))?;
    let rules = egress_of(Some(&body)).await?;
    let backend = state.backend.clone();
    let id2 = id.clone();
    tokio::spawn(async move { backend.set_egress(&id2, rules).await })
        .await
        .map_err(|e| ApiError::Internal(format!("setting egress rules failed: {e}")))??;
    state.registry.set_network(&id, body.allow_out, body.deny_out);
    Ok(StatusCode::NO_CONTENT)
}
