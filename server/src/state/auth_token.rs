//! Auth tokens: the provider `--auth-token` picks (etcd's `TokenProvider`),
//! which hands a token to an authenticated user and tells, for a token a
//! request carries, whose it is.
//!
//! - `simple` (etcd's default, its `simple_token.go`):
//!   `<16 random letters>.<raft index>`. The member that checked the
//!   password draws the letters and proposes them; every member assigns the
//!   token when it applies the entry, so a client may use it on any member.
//!   Tokens expire after `--auth-token-ttl` seconds unused and are dropped
//!   when their user is deleted or changes password, or auth is disabled.
//! - `jwt,...` ([`crate::state::jwt`]): signed and stateless. Applying the
//!   entry assigns nothing; the member that proposed it signs the token at
//!   the auth revision the password was checked at.
//! - `""` (etcd's no-op provider): issues no token and accepts none.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::Rng;

use crate::config::AuthToken;
use crate::error::{Error, Result};
use crate::state::jwt::JwtTokens;

/// etcd's default simple-token TTL (`--auth-token-ttl`, seconds).
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(300);
const TOKEN_LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const TOKEN_PREFIX_LEN: usize = 16;

/// The member's token provider.
pub enum TokenProvider {
    Simple(SimpleTokens),
    Jwt(JwtTokens),
    Nop,
}

impl TokenProvider {
    /// The provider `--auth-token` asks for; simple tokens live
    /// `simple_ttl` unused. JWT keys are read and checked here, failing
    /// with etcd's errors.
    pub fn new(kind: &AuthToken, simple_ttl: Duration) -> Result<TokenProvider> {
        Ok(match kind {
            AuthToken::Simple => TokenProvider::simple(simple_ttl),
            AuthToken::Jwt(opts) => TokenProvider::Jwt(
                JwtTokens::load(opts).map_err(|e| Error::Config(format!("--auth-token: {e}")))?,
            ),
            AuthToken::Off => TokenProvider::Nop,
        })
    }

    /// Simple tokens living `ttl` unused.
    pub fn simple(ttl: Duration) -> TokenProvider {
        TokenProvider::Simple(SimpleTokens { tokens: Mutex::new(HashMap::new()), ttl })
    }

    /// What an Authenticate proposal carries for the token: simple tokens'
    /// random letters; nothing for the others (etcd's `genTokenPrefix`).
    pub fn prefix(&self) -> String {
        match self {
            TokenProvider::Simple(_) => {
                let mut rng = rand::rng();
                (0..TOKEN_PREFIX_LEN)
                    .map(|_| TOKEN_LETTERS[rng.random_range(0..TOKEN_LETTERS.len())] as char)
                    .collect()
            }
            TokenProvider::Jwt(_) | TokenProvider::Nop => String::new(),
        }
    }

    /// An Authenticate of `user` applied at raft `index` with `prefix`:
    /// the simple token, now valid on this member; `None` for a JWT (the
    /// proposer signs it, [`TokenProvider::sign`]).
    pub fn assign(&self, user: &str, prefix: &str, index: u64) -> Result<Option<String>> {
        match self {
            TokenProvider::Simple(s) => Ok(Some(s.assign(user, prefix, index))),
            TokenProvider::Jwt(_) => Ok(None),
            TokenProvider::Nop => Err(Error::AuthFailed),
        }
    }

    /// A signed token for `user` at auth `revision` (JWT only).
    pub fn sign(&self, user: &str, revision: u64) -> Result<String> {
        match self {
            TokenProvider::Jwt(j) => j.sign(user, revision),
            _ => Err(Error::Internal("only JWTs are signed".into())),
        }
    }

    /// The user `token` belongs to and the auth revision it stands for:
    /// the store's `revision` for a simple token, the one signed into a
    /// JWT. `applied` is this member's applied index: a simple token
    /// minted by an entry not applied here yet is waited for (bounded).
    pub async fn info(
        &self,
        token: &str,
        applied: impl Fn() -> u64,
        revision: impl Fn() -> u64,
    ) -> Result<(String, u64)> {
        match self {
            TokenProvider::Simple(s) => Ok((s.info(token, applied).await?, revision())),
            TokenProvider::Jwt(j) => j.verify(token).map_err(|why| {
                tracing::warn!(%why, "invalid auth token");
                Error::InvalidAuthToken
            }),
            TokenProvider::Nop => Err(Error::InvalidAuthToken),
        }
    }

    /// Drops `user`'s simple tokens (deleted, or a new password).
    pub fn invalidate_user(&self, user: &str) {
        if let TokenProvider::Simple(s) = self {
            s.tokens.lock().retain(|_, t| t.user != user);
        }
    }

    /// Drops every simple token (auth disabled).
    pub fn clear(&self) {
        if let TokenProvider::Simple(s) = self {
            s.tokens.lock().clear();
        }
    }
}

struct Token {
    user: String,
    expires: Instant,
}

/// etcd's simple tokens: assigned on every member, renewed on use.
pub struct SimpleTokens {
    tokens: Mutex<HashMap<String, Token>>,
    ttl: Duration,
}

impl SimpleTokens {
    fn assign(&self, user: &str, prefix: &str, index: u64) -> String {
        let token = format!("{prefix}.{index}");
        let mut tokens = self.tokens.lock();
        let now = Instant::now();
        tokens.retain(|_, t| t.expires > now);
        tokens.insert(token.clone(), Token { user: user.to_string(), expires: now + self.ttl });
        token
    }

    async fn info(&self, token: &str, applied: impl Fn() -> u64) -> Result<String> {
        let index = token.rsplit_once('.').and_then(|(_, i)| i.parse::<u64>().ok());
        let Some(index) = index else {
            return Err(Error::InvalidAuthToken);
        };
        // The Authenticate entry may be committed but not applied here yet.
        let deadline = Instant::now() + Duration::from_secs(5);
        while applied() < index && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let now = Instant::now();
        let mut tokens = self.tokens.lock();
        match tokens.get_mut(token) {
            Some(t) if t.expires > now => {
                t.expires = now + self.ttl;
                Ok(t.user.clone())
            }
            Some(_) => {
                tokens.remove(token);
                Err(Error::InvalidAuthToken)
            }
            None => Err(Error::InvalidAuthToken),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn simple_tokens_are_assigned_renewed_and_dropped() {
        let tokens = TokenProvider::simple(Duration::from_secs(60));
        let prefix = tokens.prefix();
        assert_eq!(prefix.len(), TOKEN_PREFIX_LEN);
        let token = tokens.assign("alice", &prefix, 9).unwrap().unwrap();
        assert_eq!(token, format!("{prefix}.9"));
        let rt = rt();
        assert_eq!(rt.block_on(tokens.info(&token, || 9, || 4)).unwrap(), ("alice".into(), 4));
        tokens.invalidate_user("alice");
        assert!(matches!(
            rt.block_on(tokens.info(&token, || 9, || 4)),
            Err(Error::InvalidAuthToken)
        ));
        assert!(matches!(
            rt.block_on(tokens.info("nodot", || 9, || 4)),
            Err(Error::InvalidAuthToken)
        ));
    }

    #[test]
    fn the_nop_provider_issues_and_accepts_nothing() {
        let tokens = TokenProvider::new(&AuthToken::Off, DEFAULT_TOKEN_TTL).unwrap();
        assert_eq!(tokens.prefix(), "");
        assert!(matches!(tokens.assign("alice", "", 3), Err(Error::AuthFailed)));
        let info = rt().block_on(tokens.info("x.3", || 3, || 1));
        assert!(matches!(info, Err(Error::InvalidAuthToken)));
    }
}
