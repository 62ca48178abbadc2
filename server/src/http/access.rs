//! etcd's access rules for the HTTP side of the client port (gRPC calls do
//! not pass here): the `--host-whitelist` check against DNS rebinding on
//! plain-HTTP requests, CORS headers for the `--cors` origins, `OPTIONS`
//! answered at once, and the refusal of a gateway call that carries a
//! client certificate's common name while auth is on (etcd never takes the
//! gateway's certificate for a user).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use axum::middleware::Next;

use crate::services::context::Context;
use crate::tls::{ClientCertCommonName, TlsConnection};

/// The rules, from the member's flags.
#[derive(Clone)]
pub struct AccessRules {
    ctx: Arc<Context>,
    any_origin: bool,
    origins: Vec<String>,
    any_host: bool,
    hosts: Vec<String>,
}

impl AccessRules {
    pub fn new(ctx: Arc<Context>) -> AccessRules {
        let cfg = &ctx.cfg;
        AccessRules {
            any_origin: cfg.cors.iter().any(|o| o == "*"),
            origins: cfg.cors.clone(),
            any_host: cfg.host_whitelist.iter().any(|h| h == "*"),
            hosts: cfg.host_whitelist.clone(),
            ctx,
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.any_host || self.hosts.iter().any(|h| h == host)
    }

    /// The origin to name in `Access-Control-Allow-Origin`, if any.
    fn allowed_origin(&self, req: &Request<Body>) -> Option<String> {
        if self.any_origin {
            return Some("*".into());
        }
        let origin = req.headers().get(header::ORIGIN)?.to_str().ok()?;
        self.origins.iter().any(|o| o == origin).then(|| origin.to_string())
    }
}

/// The Host header without its port (etcd's `GetHostname`).
fn hostname(req: &Request<Body>) -> String {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().host().map(str::to_string))
        .unwrap_or_default();
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or_default().to_string();
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name.to_string(),
        _ => host,
    }
}

/// The middleware: see the module's documentation.
pub async fn check(
    State(rules): State<AccessRules>,
    req: Request<Body>,
    next: Next,
) -> Response<Body> {
    let common_name = req.extensions().get::<ClientCertCommonName>().map(|c| c.0.clone());
    let secure = req.extensions().get::<TlsConnection>().is_some();
    if !secure {
        let host = hostname(&req);
        if !rules.host_allowed(&host) {
            tracing::warn!(host = %host, "rejecting HTTP request to prevent DNS rebinding attacks");
            return plain(StatusCode::MISDIRECTED_REQUEST, rebinding_message(&host));
        }
    } else if rules.ctx.stores.auth.enabled()
        && req.uri().path().starts_with("/v3/")
        && common_name.is_some_and(|cn| !cn.is_empty())
    {
        return plain(
            StatusCode::BAD_REQUEST,
            "CommonName of client sending a request against gateway will be ignored and not used as expected\n"
                .into(),
        );
    }
    let origin = rules.allowed_origin(&req);
    let mut resp = if req.method() == Method::OPTIONS {
        Response::new(Body::empty())
    } else {
        next.run(req).await
    };
    if let Some(origin) = origin
        && let Ok(origin) = HeaderValue::from_str(&origin)
    {
        let h = resp.headers_mut();
        h.append(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
        );
        h.append(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.append(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("accept, content-type, authorization"),
        );
    }
    resp
}

fn plain(status: StatusCode, text: String) -> Response<Body> {
    let mut resp = Response::new(Body::from(text));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    resp
}

/// etcd's explanation (CVE-2018-5702), with the flag to use.
fn rebinding_message(host: &str) -> String {
    format!(
        "\netcd received your request, but the Host header was unrecognized.\n\n\
         To fix this, choose one of the following options:\n\
         - Enable TLS, then any HTTPS request will be allowed.\n\
         - Add the hostname you want to use to the whitelist in settings.\n  \
         - e.g. etcd --host-whitelist {host:?}\n\n\
         This requirement has been added to help prevent \"DNS Rebinding\" attacks (CVE-2018-5702).\n\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(host: &str) -> Request<Body> {
        Request::builder().uri("/health").header(header::HOST, host).body(Body::empty()).unwrap()
    }

    #[test]
    fn hostnames_lose_their_port() {
        assert_eq!(hostname(&req("example.com:2379")), "example.com");
        assert_eq!(hostname(&req("127.0.0.1")), "127.0.0.1");
        assert_eq!(hostname(&req("[::1]:2379")), "::1");
        assert!(rebinding_message("evil.example").contains("--host-whitelist \"evil.example\""));
    }
}
