//! `--auth-token`: "simple", or "jwt,pub-key=...,priv-key=...,sign-method=...,ttl=..."
//! parsed as etcd's `decomposeOpts` and `jwtOptions` parse it, with etcd's
//! errors ("auth: invalid auth options", "auth: invalid auth signature
//! method", "auth: missing key data").

use std::path::PathBuf;
use std::time::Duration;

use super::duration;

/// The token provider `--auth-token` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthToken {
    /// etcd's default: random tokens that live `--auth-token-ttl` seconds.
    Simple,
    /// Signed JSON Web Tokens.
    Jwt(JwtOptions),
    /// `--auth-token=""`: etcd's no-op provider, which issues no tokens.
    Off,
}

/// `--auth-token jwt,...` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtOptions {
    /// `sign-method`: one of [`JWT_SIGN_METHODS`].
    pub sign_method: String,
    /// `pub-key`: PEM file; alone, the member only verifies tokens.
    pub public_key: Option<PathBuf>,
    /// `priv-key`: PEM file (the shared secret itself for HS*).
    pub private_key: Option<PathBuf>,
    /// `ttl`: a token's lifetime (etcd's default 5 minutes).
    pub ttl: Duration,
}

/// The signing methods etcd's JWT library knows.
pub const JWT_SIGN_METHODS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "ES512", "EdDSA",
];

const INVALID_OPTS: &str = "auth: invalid auth options";

/// Parses `--auth-token`. Unknown JWT options are returned as a warning, as
/// etcd logs them. Key files are checked to be readable.
pub fn parse(text: &str) -> Result<(AuthToken, Option<String>), String> {
    let mut parts = text.split(',');
    let kind = parts.next().unwrap_or_default();
    let mut opts: Vec<(&str, &str)> = Vec::new();
    for part in parts {
        let pair: Vec<&str> = part.split('=').collect();
        if pair.len() != 2 || opts.iter().any(|(k, _)| *k == pair[0]) {
            return Err(format!("--auth-token {text:?}: {INVALID_OPTS} (bad option {part:?})"));
        }
        opts.push((pair[0], pair[1]));
    }
    let get = |k: &str| opts.iter().find(|(key, _)| *key == k).map(|(_, v)| *v).unwrap_or("");
    match kind {
        "simple" => Ok((AuthToken::Simple, None)),
        "" => Ok((AuthToken::Off, None)),
        "jwt" => {
            let ttl = match get("ttl") {
                "" => Duration::from_secs(300),
                t => duration::parse(t)
                    .map_err(|e| format!("--auth-token: {INVALID_OPTS} (ttl: {e})"))?,
            };
            let file = |key: &str| -> Result<Option<PathBuf>, String> {
                match get(key) {
                    "" => Ok(None),
                    path => {
                        std::fs::metadata(path).map_err(|e| {
                            format!("--auth-token: {INVALID_OPTS} ({key} {path}: {e})")
                        })?;
                        Ok(Some(PathBuf::from(path)))
                    }
                }
            };
            let public_key = file("pub-key")?;
            let private_key = file("priv-key")?;
            let sign_method = get("sign-method");
            if !JWT_SIGN_METHODS.contains(&sign_method) {
                return Err(format!(
                    "--auth-token: auth: invalid auth signature method {sign_method:?} (one of {})",
                    JWT_SIGN_METHODS.join(", ")
                ));
            }
            let missing = if sign_method.starts_with("HS") {
                private_key.is_none()
            } else {
                private_key.is_none() && public_key.is_none()
            };
            if missing {
                return Err("--auth-token: auth: missing key data (pub-key and/or priv-key)".into());
            }
            let unknown: Vec<&str> = opts
                .iter()
                .map(|(k, _)| *k)
                .filter(|k| !matches!(*k, "sign-method" | "pub-key" | "priv-key" | "ttl"))
                .collect();
            let warning = (!unknown.is_empty())
                .then(|| format!("unknown JWT options in --auth-token: {}", unknown.join(", ")));
            let jwt =
                JwtOptions { sign_method: sign_method.to_string(), public_key, private_key, ttl };
            Ok((AuthToken::Jwt(jwt), warning))
        }
        other => Err(format!(
            "--auth-token: {INVALID_OPTS} (unknown token type {other:?}: 'simple' or 'jwt')"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_and_off() {
        assert_eq!(parse("simple").unwrap(), (AuthToken::Simple, None));
        assert_eq!(parse("").unwrap(), (AuthToken::Off, None));
    }

    #[test]
    fn jwt_options() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.pem");
        std::fs::write(&key, "not checked here").unwrap();
        let k = key.display();
        let (token, warning) =
            parse(&format!("jwt,pub-key={k},priv-key={k},sign-method=RS256,ttl=10m")).unwrap();
        assert_eq!(
            token,
            AuthToken::Jwt(JwtOptions {
                sign_method: "RS256".into(),
                public_key: Some(key.clone()),
                private_key: Some(key.clone()),
                ttl: Duration::from_secs(600),
            })
        );
        assert_eq!(warning, None);
        let (token, warning) = parse(&format!("jwt,priv-key={k},sign-method=HS256,x=1")).unwrap();
        assert!(
            matches!(token, AuthToken::Jwt(JwtOptions { ttl, .. }) if ttl == Duration::from_secs(300))
        );
        assert_eq!(warning.as_deref(), Some("unknown JWT options in --auth-token: x"));
    }

    #[test]
    fn bad_jwt_options_use_etcds_errors() {
        let err = |t: &str| parse(t).unwrap_err();
        assert!(err("jwt,sign-method").contains("auth: invalid auth options"));
        assert!(err("jwt,ttl=1m,ttl=2m").contains("auth: invalid auth options"));
        assert!(err("jwt,sign-method=XX256").contains("auth: invalid auth signature method"));
        assert!(err("jwt,sign-method=ES256").contains("auth: missing key data"));
        assert!(err("jwt,sign-method=HS256,priv-key=/no/such/key").contains("/no/such/key"));
        assert!(err("oauth").contains("unknown token type \"oauth\""));
    }
}
