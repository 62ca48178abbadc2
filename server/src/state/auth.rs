//! Authentication and role-based access control: etcd's auth store.
//!
//! Users (with bcrypt password hashes), roles (with read/write permissions on
//! keys and key ranges) and the enabled flag live in the engine under etcd's
//! own bucket names and encodings (`auth`, `authUsers`, `authRoles`), so an
//! etcd snapshot's users keep working and ours move back to etcd. Every
//! change is a Raft entry applied by every member; each member keeps the
//! decoded state and every user's merged permissions in memory.
//!
//! Where requests are checked (as etcd checks them):
//! - writes (Put, DeleteRange, Txn, LeaseRevoke) and auth management: when
//!   applied, against the replicated state, with the user and auth revision
//!   the proposer recorded in the entry. A request checked at an older auth
//!   revision than the store's is refused, so a revoked permission can never
//!   let a write through;
//! - reads, watches, lease keep-alives and the maintenance and cluster calls:
//!   by the service before answering.
//!
//! Tokens come from the provider `--auth-token` picks
//! ([`crate::state::auth_token`]): etcd's simple tokens, or signed JWTs
//! ([`crate::state::jwt`]) carrying the auth revision they were issued at,
//! refused once the store has moved past it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine as _;
use logbook_api::authpb::permission::Type as PermType;
use logbook_api::authpb::{Permission, Role, User, UserAddOptions};
use logbook_api::etcdserverpb::{
    AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest, AuthUserAddRequest,
    AuthUserChangePasswordRequest, AuthUserGrantRoleRequest, AuthUserRevokeRoleRequest, RequestOp,
    TxnRequest, request_op,
};
use logbook_api::logbookpb::AuthenticateRequest;
use logbook_engine::{Engine, WriteTxn};
use parking_lot::RwLock;
use prost::Message;

use crate::error::{Error, Result};
use crate::schema::{AUTH_BUCKET, AUTH_ENABLED_KEY, AUTH_REVISION_KEY, ROLES_BUCKET, USERS_BUCKET};
use crate::state::auth_token::TokenProvider;
use crate::state::lessor::Lessor;

/// The user that must exist, with the root role, before auth is enabled.
pub const ROOT_USER: &str = "root";
/// The role that may do everything.
pub const ROOT_ROLE: &str = "root";

/// etcd's default bcrypt cost (`--bcrypt-cost`).
pub const DEFAULT_BCRYPT_COST: u32 = 10;
pub use crate::state::auth_token::DEFAULT_TOKEN_TTL;

/// Who a request comes from: a user, and the auth revision its credentials
/// were checked at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthInfo {
    pub user: String,
    pub revision: u64,
}

pub use crate::tls::ClientCertCommonName;

/// What a client presented: a token (metadata `token`, or `authorization`
/// as the JSON gateway forwards it) and the common name of its verified
/// TLS client certificate.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    pub token: Option<String>,
    pub common_name: Option<String>,
}

impl Credentials {
    /// The credentials of a gRPC request.
    pub fn of<T>(request: &tonic::Request<T>) -> Credentials {
        let metadata = request.metadata();
        let token = metadata
            .get("token")
            .or_else(|| metadata.get("authorization"))
            .and_then(|v| v.to_str().ok())
            .map(|t| t.strip_prefix("Bearer ").unwrap_or(t).to_string());
        let common_name = request.extensions().get::<ClientCertCommonName>().map(|c| c.0.clone());
        Credentials { token, common_name }
    }
}

/// Who an applied entry says it comes from.
#[derive(Clone, Copy, Debug)]
pub enum Requester<'a> {
    /// The member itself (lease expiry): never checked.
    System,
    /// A client: the user is empty when it presented no credentials.
    Client { user: &'a str, revision: u64 },
}

impl<'a> Requester<'a> {
    /// A client known by its [`AuthInfo`]; no credentials is the empty user.
    pub fn of(who: Option<&'a AuthInfo>) -> Requester<'a> {
        match who {
            Some(w) => Requester::Client { user: &w.user, revision: w.revision },
            None => Requester::Client { user: "", revision: 0 },
        }
    }
}

/// What a permission allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Sorted, merged, half-open key intervals; `None` as an end means "to the
/// end of the keyspace".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Ranges(Vec<(Vec<u8>, Option<Vec<u8>>)>);

impl Ranges {
    fn build(mut intervals: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Ranges {
        intervals.sort();
        let mut merged: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::with_capacity(intervals.len());
        for (start, end) in intervals {
            if let Some(last) = merged.last_mut() {
                // Overlapping or touching: extend the last one.
                let touches = match &last.1 {
                    None => true,
                    Some(last_end) => start <= *last_end,
                };
                if touches {
                    last.1 = match (last.1.take(), end) {
                        (None, _) | (_, None) => None,
                        (Some(a), Some(b)) => Some(a.max(b)),
                    };
                    continue;
                }
            }
            merged.push((start, end));
        }
        Ranges(merged)
    }

    /// The interval that starts at or before `key`, if any.
    fn at(&self, key: &[u8]) -> Option<&(Vec<u8>, Option<Vec<u8>>)> {
        let i = self.0.partition_point(|(s, _)| s.as_slice() <= key);
        if i == 0 { None } else { self.0.get(i - 1) }
    }

    fn contains(&self, key: &[u8]) -> bool {
        self.at(key).is_some_and(|(_, end)| end.as_deref().is_none_or(|e| key < e))
    }

    /// Whether `[start, end)` (end `None`: unbounded) lies inside one merged
    /// interval, i.e. inside the union of the permissions.
    fn covers(&self, start: &[u8], end: Option<&[u8]>) -> bool {
        match self.at(start) {
            None => false,
            Some((_, None)) => true,
            Some((_, Some(have))) => match end {
                None => false,
                Some(end) => end <= have.as_slice() && start < have.as_slice(),
            },
        }
    }
}

/// A user's merged permissions.
#[derive(Debug, Default)]
struct UserPerms {
    root: bool,
    read: Ranges,
    write: Ranges,
}

#[derive(Default)]
struct State {
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
    perms: HashMap<String, UserPerms>,
}

impl State {
    fn refresh_perms(&mut self) {
        let mut perms = HashMap::with_capacity(self.users.len());
        for (name, user) in &self.users {
            let mut p = UserPerms { root: has_root_role(user), ..Default::default() };
            let (mut read, mut write) = (Vec::new(), Vec::new());
            for role in user.roles.iter().filter_map(|r| self.roles.get(r)) {
                for perm in &role.key_permission {
                    let ivl = permission_interval(perm);
                    let typ = PermType::try_from(perm.perm_type).unwrap_or(PermType::Read);
                    if matches!(typ, PermType::Read | PermType::Readwrite) {
                        read.push(ivl.clone());
                    }
                    if matches!(typ, PermType::Write | PermType::Readwrite) {
                        write.push(ivl);
                    }
                }
            }
            p.read = Ranges::build(read);
            p.write = Ranges::build(write);
            perms.insert(name.clone(), p);
        }
        self.perms = perms;
    }
}

/// A permission's keys as a half-open interval: a single key `k` is
/// `[k, k\0)`; a range end of `\0` means every key from `key` on.
fn permission_interval(p: &Permission) -> (Vec<u8>, Option<Vec<u8>>) {
    let end = if p.range_end.is_empty() {
        let mut e = p.key.to_vec();
        e.push(0);
        Some(e)
    } else if p.range_end.as_ref() == [0] {
        None
    } else {
        Some(p.range_end.to_vec())
    };
    (p.key.to_vec(), end)
}

fn has_root_role(u: &User) -> bool {
    u.roles.iter().any(|r| r == ROOT_ROLE)
}

/// The member's auth store.
pub struct AuthStore {
    enabled: AtomicBool,
    state: RwLock<State>,
    tokens: TokenProvider,
    bcrypt_cost: u32,
}

impl AuthStore {
    /// An empty, disabled store (filled by [`AuthStore::rebuild`]) handing
    /// out `tokens`' tokens.
    pub fn new(tokens: TokenProvider, bcrypt_cost: u32) -> AuthStore {
        AuthStore {
            enabled: AtomicBool::new(false),
            state: RwLock::new(State::default()),
            tokens,
            bcrypt_cost,
        }
    }

    /// Reloads users, roles and the flag from `engine` (start-up, or after a
    /// snapshot replaced the engine).
    pub fn rebuild(&self, engine: &Engine) -> Result<()> {
        let mut st = State::default();
        for (k, v) in engine.meta_scan(USERS_BUCKET) {
            let u = User::decode(v.as_slice())
                .map_err(|e| Error::Internal(format!("undecodable auth user record: {e}")))?;
            st.users.insert(String::from_utf8_lossy(&k).into_owned(), u);
        }
        for (k, v) in engine.meta_scan(ROLES_BUCKET) {
            let r = Role::decode(v.as_slice())
                .map_err(|e| Error::Internal(format!("undecodable auth role record: {e}")))?;
            st.roles.insert(String::from_utf8_lossy(&k).into_owned(), r);
        }
        // A store that never changed is at revision 1, not 0: etcd's
        // NewAuthStore commits 1 over a 0 at every start. JWTs carry the
        // revision, so etcd's and ours must count alike for a token to be
        // good on both; the first change writes 2, as etcd's does.
        st.revision = engine
            .meta_get(AUTH_BUCKET, AUTH_REVISION_KEY)
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, u64::from_be_bytes)
            .max(1);
        let enabled = engine.meta_get(AUTH_BUCKET, AUTH_ENABLED_KEY).is_some_and(|v| v == [1]);
        st.refresh_perms();
        *self.state.write() = st;
        if !enabled {
            self.tokens.clear();
        }
        self.enabled.store(enabled, Ordering::Release);
        Ok(())
    }

    /// Whether requests are checked at all.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// The auth revision: bumped by every change of users, roles or flag.
    pub fn revision(&self) -> u64 {
        self.state.read().revision
    }

    // ---- credentials -------------------------------------------------------

    /// The user `creds` name: the token's, else the client certificate's
    /// common name. `None` when auth is off or the request carries neither.
    /// `applied` is this member's applied index: a token minted by an entry
    /// not applied here yet is waited for (bounded).
    pub async fn info(
        &self,
        creds: &Credentials,
        applied: impl Fn() -> u64,
    ) -> Result<Option<AuthInfo>> {
        if !self.enabled() {
            return Ok(None);
        }
        if let Some(token) = &creds.token {
            return self.info_from_token(token, applied).await.map(Some);
        }
        Ok(creds
            .common_name
            .as_deref()
            .filter(|cn| !cn.is_empty())
            .map(|cn| AuthInfo { user: cn.to_string(), revision: self.revision() }))
    }

    async fn info_from_token(&self, token: &str, applied: impl Fn() -> u64) -> Result<AuthInfo> {
        let (user, revision) = self.tokens.info(token, applied, || self.revision()).await?;
        Ok(AuthInfo { user, revision })
    }

    /// Checks `name`'s password (bcrypt: run it off the async threads).
    /// Returns the auth revision it was checked at.
    pub fn check_password(&self, name: &str, password: &str) -> Result<u64> {
        if !self.enabled() {
            return Err(Error::AuthNotEnabled);
        }
        let (hash, revision) = {
            let st = self.state.read();
            let user = st.users.get(name).ok_or(Error::AuthFailed)?;
            if user.options.as_ref().is_some_and(|o| o.no_password) {
                return Err(Error::AuthFailed);
            }
            (user.password.clone(), st.revision)
        };
        let hash = std::str::from_utf8(&hash).map_err(|_| Error::AuthFailed)?;
        match bcrypt::verify(password, hash) {
            Ok(true) => Ok(revision),
            _ => Err(Error::AuthFailed),
        }
    }

    /// A password's hash as etcd stores it, base64-encoded for the
    /// `hashedPassword` request field.
    pub fn hash_password(&self, password: &str) -> Result<String> {
        let hash = bcrypt::hash(password, self.bcrypt_cost)
            .map_err(|e| Error::Internal(format!("hashing a password: {e}")))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(hash))
    }

    /// What an Authenticate proposal carries for its token: a fresh random
    /// prefix for a simple token, nothing for a JWT.
    pub fn token_prefix(&self) -> String {
        self.tokens.prefix()
    }

    /// A signed token for `user` at auth `revision`, when the tokens are
    /// JWTs (see [`AuthStore::apply`]); RSA signing takes milliseconds, so
    /// call it off the async threads.
    pub fn sign_token(&self, user: &str, revision: u64) -> Result<String> {
        self.tokens.sign(user, revision)
    }

    // ---- checks ------------------------------------------------------------

    /// etcd's `isOpPermitted`: may `who` access `[key, range_end)` (a single
    /// key when `range_end` is empty; `\0` means "to the end")?
    pub fn check(
        &self,
        who: Option<&AuthInfo>,
        key: &[u8],
        range_end: &[u8],
        access: Access,
    ) -> Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        self.check_as(Requester::of(who), key, range_end, access)
    }

    fn check_as(
        &self,
        who: Requester<'_>,
        key: &[u8],
        range_end: &[u8],
        access: Access,
    ) -> Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        let Requester::Client { user, revision } = who else {
            return Ok(());
        };
        if revision == 0 {
            return Err(Error::UserEmpty);
        }
        let st = self.state.read();
        if revision < st.revision {
            return Err(Error::AuthOldRevision);
        }
        let Some(perms) = st.perms.get(user) else {
            return Err(Error::PermissionDenied);
        };
        if perms.root {
            return Ok(());
        }
        let ranges = match access {
            Access::Read => &perms.read,
            Access::Write => &perms.write,
        };
        let allowed = if range_end.is_empty() {
            ranges.contains(key)
        } else if range_end == [0] {
            ranges.covers(key, None)
        } else {
            ranges.covers(key, Some(range_end))
        };
        if allowed { Ok(()) } else { Err(Error::PermissionDenied) }
    }

    /// etcd's `IsAdminPermitted`: does `who` hold the root role?
    pub fn check_admin(&self, who: Option<&AuthInfo>) -> Result<()> {
        self.check_admin_as(Requester::of(who))
    }

    fn check_admin_as(&self, who: Requester<'_>) -> Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        let Requester::Client { user, .. } = who else {
            return Ok(());
        };
        if user.is_empty() {
            return Err(Error::UserEmpty);
        }
        let st = self.state.read();
        match st.users.get(user) {
            None => Err(Error::UserNotFound),
            Some(u) if has_root_role(u) => Ok(()),
            Some(_) => Err(Error::PermissionDenied),
        }
    }

    /// etcd's `requireAuthInfo`: with auth on, the caller must have
    /// presented credentials (Status, Alarm GET).
    pub fn require_user(&self, who: Option<&AuthInfo>) -> Result<()> {
        if self.enabled() && who.is_none_or(|w| w.user.is_empty()) {
            return Err(Error::UserEmpty);
        }
        Ok(())
    }

    /// A read answered from the engine is refused if the auth store changed
    /// while it ran, as etcd refuses it.
    pub fn check_still_current(&self, who: Option<&AuthInfo>) -> Result<()> {
        match who {
            Some(w) if w.revision != 0 && w.revision != self.revision() => {
                Err(Error::AuthOldRevision)
            }
            _ => Ok(()),
        }
    }

    /// May `who` renew, revoke or attach keys to `lease`? Only if it may
    /// write every key the lease holds (or is root).
    fn check_lease_keys(
        &self,
        who: Requester<'_>,
        lessor: &Lessor,
        lease: i64,
        access: Access,
    ) -> Result<()> {
        if !self.enabled() || lease == 0 || !lessor.exists(lease) {
            return Ok(());
        }
        if self.check_admin_as(who).is_ok() {
            return Ok(());
        }
        for key in lessor.keys(lease) {
            self.check_as(who, &key, &[], access)?;
        }
        Ok(())
    }

    /// The API-side lease checks: keep-alive needs write access to the
    /// lease's keys, TimeToLive and Leases read access.
    pub fn check_lease(
        &self,
        who: Option<&AuthInfo>,
        lessor: &Lessor,
        lease: i64,
        access: Access,
    ) -> Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        self.check_lease_keys(Requester::of(who), lessor, lease, access)
    }

    /// The checks of a Put when applied.
    pub fn check_put(
        &self,
        who: Requester<'_>,
        lessor: &Lessor,
        key: &[u8],
        lease: i64,
        prev_kv: bool,
    ) -> Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        self.check_as(who, key, &[], Access::Write)?;
        // A lease holding keys this user may not write cannot take more.
        self.check_lease_keys(who, lessor, lease, Access::Write)?;
        if prev_kv {
            self.check_as(who, key, &[], Access::Read)?;
        }
        Ok(())
    }

    /// The checks of a DeleteRange when applied.
    pub fn check_delete(
        &self,
        who: Requester<'_>,
        key: &[u8],
        range_end: &[u8],
        prev_kv: bool,
    ) -> Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        self.check_as(who, key, range_end, Access::Write)?;
        if prev_kv {
            self.check_as(who, key, range_end, Access::Read)?;
        }
        Ok(())
    }

    /// The checks of a Txn (every compare and every operation, nested ones
    /// included), when applied or before a read-only one is served.
    pub fn check_txn(&self, who: Requester<'_>, lessor: &Lessor, t: &TxnRequest) -> Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        for c in &t.compare {
            self.check_as(who, &c.key, &c.range_end, Access::Read)?;
        }
        self.check_ops(who, lessor, &t.success)?;
        self.check_ops(who, lessor, &t.failure)
    }

    fn check_ops(&self, who: Requester<'_>, lessor: &Lessor, ops: &[RequestOp]) -> Result<()> {
        for op in ops {
            match &op.request {
                Some(request_op::Request::RequestRange(r)) => {
                    self.check_as(who, &r.key, &r.range_end, Access::Read)?
                }
                Some(request_op::Request::RequestPut(p)) => {
                    self.check_put(who, lessor, &p.key, p.lease, p.prev_kv)?
                }
                Some(request_op::Request::RequestDeleteRange(d)) => {
                    self.check_delete(who, &d.key, &d.range_end, d.prev_kv)?
                }
                Some(request_op::Request::RequestTxn(t)) => self.check_txn(who, lessor, t)?,
                None => {}
            }
        }
        Ok(())
    }

    /// The checks of a LeaseRevoke when applied.
    pub fn check_revoke(&self, who: Requester<'_>, lessor: &Lessor, lease: i64) -> Result<()> {
        self.check_lease_keys(who, lessor, lease, Access::Write)
    }

    /// A Txn's checks for a caller known by [`AuthInfo`] (read-only
    /// transactions, served without Raft).
    pub fn check_txn_for(
        &self,
        who: Option<&AuthInfo>,
        lessor: &Lessor,
        t: &TxnRequest,
    ) -> Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        self.check_txn(Requester::of(who), lessor, t)
    }

    // ---- reads of the store ------------------------------------------------

    /// AuthStatus: the flag and the revision.
    pub fn status(&self) -> (bool, u64) {
        (self.enabled(), self.revision())
    }

    /// UserGet: the user's roles. Allowed to root, and to the user itself.
    pub fn user_roles(&self, who: Option<&AuthInfo>, name: &str) -> Result<Vec<String>> {
        if let Err(e) = self.check_admin(who)
            && who.is_none_or(|w| w.user != name)
        {
            return Err(e);
        }
        let st = self.state.read();
        st.users.get(name).map(|u| u.roles.clone()).ok_or(Error::UserNotFound)
    }

    /// RoleGet: the role's permissions. Allowed to root, and to holders of
    /// the role.
    pub fn role_permissions(&self, who: Option<&AuthInfo>, role: &str) -> Result<Vec<Permission>> {
        if let Err(e) = self.check_admin(who) {
            let holds = who.is_some_and(|w| {
                self.state
                    .read()
                    .users
                    .get(&w.user)
                    .is_some_and(|u| u.roles.iter().any(|r| r == role))
            });
            if !holds {
                return Err(e);
            }
        }
        let st = self.state.read();
        let r = st.roles.get(role).ok_or(Error::RoleNotFound)?;
        if role == ROOT_ROLE {
            return Ok(vec![Permission {
                perm_type: PermType::Readwrite as i32,
                key: Default::default(),
                range_end: vec![0u8].into(),
            }]);
        }
        Ok(r.key_permission.clone())
    }

    /// UserList (root only).
    pub fn user_names(&self, who: Option<&AuthInfo>) -> Result<Vec<String>> {
        self.check_admin(who)?;
        Ok(self.state.read().users.keys().cloned().collect())
    }

    /// RoleList (root only).
    pub fn role_names(&self, who: Option<&AuthInfo>) -> Result<Vec<String>> {
        self.check_admin(who)?;
        Ok(self.state.read().roles.keys().cloned().collect())
    }

    // ---- changes, applied through Raft ------------------------------------

    /// Applies one auth management request (every member, in log order).
    /// On error nothing is written. Returns the simple token of an
    /// Authenticate (`None` for a JWT, which the proposer signs with
    /// [`AuthStore::sign_token`]).
    pub fn apply(
        &self,
        txn: &mut WriteTxn<'_>,
        who: Requester<'_>,
        index: u64,
        change: AuthChange<'_>,
    ) -> Result<Option<String>> {
        if !matches!(change, AuthChange::Authenticate(_)) {
            self.check_admin_as(who)?;
        }
        let enabled = self.enabled();
        let mut st = self.state.write();
        match change {
            AuthChange::Enable => {
                if enabled {
                    return Ok(None);
                }
                let root = st.users.get(ROOT_USER).ok_or(Error::RootUserNotExist)?;
                if !has_root_role(root) {
                    return Err(Error::RootRoleNotExist);
                }
                txn.meta_put(AUTH_BUCKET, AUTH_ENABLED_KEY, &[1]);
                self.enabled.store(true, Ordering::Release);
                tracing::info!("enabled authentication");
                return Ok(None);
            }
            AuthChange::Disable => {
                if !enabled {
                    return Ok(None);
                }
                txn.meta_put(AUTH_BUCKET, AUTH_ENABLED_KEY, &[0]);
                self.bump(&mut st, txn);
                self.enabled.store(false, Ordering::Release);
                self.tokens.clear();
                tracing::info!("disabled authentication");
                return Ok(None);
            }
            AuthChange::Authenticate(a) => {
                if !enabled {
                    return Err(Error::AuthNotEnabled);
                }
                let user = st.users.get(&a.name).ok_or(Error::AuthFailed)?;
                if user.options.as_ref().is_some_and(|o| o.no_password) {
                    return Err(Error::AuthFailed);
                }
                return self.tokens.assign(&a.name, &a.simple_token, index);
            }
            AuthChange::UserAdd(r) => {
                if r.name.is_empty() {
                    return Err(Error::UserEmpty);
                }
                if st.users.contains_key(&r.name) {
                    return Err(Error::UserAlreadyExist);
                }
                let options = r.options.unwrap_or(UserAddOptions { no_password: false });
                let password = if options.no_password {
                    Default::default()
                } else {
                    stored_password(&r.password, &r.hashed_password, self.bcrypt_cost)?
                };
                let user = User {
                    name: r.name.clone().into_bytes().into(),
                    password,
                    roles: Vec::new(),
                    options: Some(options),
                };
                put_user(txn, &user);
                st.users.insert(r.name.clone(), user);
                tracing::info!(user = %r.name, "added a user");
            }
            AuthChange::UserDelete(name) => {
                if enabled && name == ROOT_USER {
                    return Err(Error::InvalidAuthMgmt);
                }
                if st.users.remove(name).is_none() {
                    return Err(Error::UserNotFound);
                }
                txn.meta_delete(USERS_BUCKET, name.as_bytes());
                self.invalidate_user(name);
                tracing::info!(user = %name, "deleted a user");
            }
            AuthChange::UserChangePassword(r) => {
                let user = st.users.get(&r.name).ok_or(Error::UserNotFound)?;
                let mut user = user.clone();
                if !user.options.as_ref().is_some_and(|o| o.no_password) {
                    user.password =
                        stored_password(&r.password, &r.hashed_password, self.bcrypt_cost)?;
                }
                put_user(txn, &user);
                st.users.insert(r.name.clone(), user);
                self.invalidate_user(&r.name);
                tracing::info!(user = %r.name, "changed a user's password");
            }
            AuthChange::UserGrantRole(r) => {
                let user = st.users.get(&r.user).ok_or(Error::UserNotFound)?;
                if r.role != ROOT_ROLE && !st.roles.contains_key(&r.role) {
                    return Err(Error::RoleNotFound);
                }
                if user.roles.contains(&r.role) {
                    return Ok(None);
                }
                let mut user = user.clone();
                user.roles.push(r.role.clone());
                user.roles.sort();
                put_user(txn, &user);
                st.users.insert(r.user.clone(), user);
                tracing::info!(user = %r.user, role = %r.role, "granted a role to a user");
            }
            AuthChange::UserRevokeRole(r) => {
                if enabled && r.name == ROOT_USER && r.role == ROOT_ROLE {
                    return Err(Error::InvalidAuthMgmt);
                }
                let user = st.users.get(&r.name).ok_or(Error::UserNotFound)?;
                if !user.roles.contains(&r.role) {
                    return Err(Error::RoleNotGranted);
                }
                let mut user = user.clone();
                user.roles.retain(|x| *x != r.role);
                put_user(txn, &user);
                st.users.insert(r.name.clone(), user);
                tracing::info!(user = %r.name, role = %r.role, "revoked a role from a user");
            }
            AuthChange::RoleAdd(name) => {
                if name.is_empty() {
                    return Err(Error::RoleEmpty);
                }
                if st.roles.contains_key(name) {
                    return Err(Error::RoleAlreadyExist);
                }
                let role =
                    Role { name: name.as_bytes().to_vec().into(), key_permission: Vec::new() };
                put_role(txn, &role);
                st.roles.insert(name.to_string(), role);
                tracing::info!(role = %name, "added a role");
            }
            AuthChange::RoleDelete(name) => {
                if enabled && name == ROOT_ROLE {
                    return Err(Error::InvalidAuthMgmt);
                }
                if st.roles.remove(name).is_none() {
                    return Err(Error::RoleNotFound);
                }
                txn.meta_delete(ROLES_BUCKET, name.as_bytes());
                for user in st.users.values_mut() {
                    if user.roles.iter().any(|r| r == name) {
                        user.roles.retain(|r| r != name);
                        put_user(txn, user);
                    }
                }
                tracing::info!(role = %name, "deleted a role");
            }
            AuthChange::RoleGrantPermission(r) => {
                let perm = r.perm.as_ref().ok_or(Error::PermissionNotGiven)?;
                if !valid_permission_range(&perm.key, &perm.range_end) {
                    return Err(Error::InvalidAuthMgmt);
                }
                let role = st.roles.get(&r.name).ok_or(Error::RoleNotFound)?;
                let mut role = role.clone();
                match role
                    .key_permission
                    .iter_mut()
                    .find(|p| p.key == perm.key && p.range_end == perm.range_end)
                {
                    Some(existing) => existing.perm_type = perm.perm_type,
                    None => {
                        role.key_permission.push(perm.clone());
                        role.key_permission.sort_by(|a, b| a.key.cmp(&b.key));
                    }
                }
                put_role(txn, &role);
                st.roles.insert(r.name.clone(), role);
                tracing::info!(role = %r.name, "granted a permission to a role");
            }
            AuthChange::RoleRevokePermission(r) => {
                let role = st.roles.get(&r.role).ok_or(Error::RoleNotFound)?;
                let mut role = role.clone();
                let before = role.key_permission.len();
                role.key_permission.retain(|p| p.key != r.key || p.range_end != r.range_end);
                if role.key_permission.len() == before {
                    return Err(Error::PermissionNotGranted);
                }
                put_role(txn, &role);
                st.roles.insert(r.role.clone(), role);
                tracing::info!(role = %r.role, "revoked a permission from a role");
            }
        }
        self.bump(&mut st, txn);
        st.refresh_perms();
        Ok(None)
    }

    fn bump(&self, st: &mut State, txn: &mut WriteTxn<'_>) {
        st.revision += 1;
        txn.meta_put(AUTH_BUCKET, AUTH_REVISION_KEY, &st.revision.to_be_bytes());
    }

    fn invalidate_user(&self, name: &str) {
        self.tokens.invalidate_user(name);
    }
}

/// One change of the auth store, as carried by a Raft entry.
#[derive(Clone, Copy, Debug)]
pub enum AuthChange<'a> {
    Enable,
    Disable,
    Authenticate(&'a AuthenticateRequest),
    UserAdd(&'a AuthUserAddRequest),
    UserDelete(&'a str),
    UserChangePassword(&'a AuthUserChangePasswordRequest),
    UserGrantRole(&'a AuthUserGrantRoleRequest),
    UserRevokeRole(&'a AuthUserRevokeRoleRequest),
    RoleAdd(&'a str),
    RoleDelete(&'a str),
    RoleGrantPermission(&'a AuthRoleGrantPermissionRequest),
    RoleRevokePermission(&'a AuthRoleRevokePermissionRequest),
}

/// The stored hash: the proposer's (base64), or, for a request that came
/// with a clear password only (older proposers), hashed here.
fn stored_password(password: &str, hashed: &str, cost: u32) -> Result<bytes::Bytes> {
    if hashed.is_empty() && !password.is_empty() {
        let h = bcrypt::hash(password, cost)
            .map_err(|e| Error::Internal(format!("hashing a password: {e}")))?;
        return Ok(h.into_bytes().into());
    }
    base64::engine::general_purpose::STANDARD
        .decode(hashed)
        .map(Into::into)
        .map_err(|_| Error::AuthFailed)
}

fn put_user(txn: &mut WriteTxn<'_>, u: &User) {
    txn.meta_put(USERS_BUCKET, &u.name, &u.encode_to_vec());
}

fn put_role(txn: &mut WriteTxn<'_>, r: &Role) {
    txn.meta_put(ROLES_BUCKET, &r.name, &r.encode_to_vec());
}

/// etcd's rules for a permission's keys: a key is required; the range end
/// is empty (one key), `\0` (to the end) or after the key.
fn valid_permission_range(key: &[u8], range_end: &[u8]) -> bool {
    !key.is_empty() && (range_end.is_empty() || range_end == [0] || key < range_end)
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;
    use crate::config::{AuthToken, JwtOptions};

    fn ivl(s: &str, e: Option<&str>) -> (Vec<u8>, Option<Vec<u8>>) {
        (s.as_bytes().to_vec(), e.map(|e| e.as_bytes().to_vec()))
    }

    #[test]
    fn ranges_merge_and_answer_points_and_ranges() {
        let r = Ranges::build(vec![
            ivl("b", Some("d")),
            ivl("c", Some("f")),
            ivl("f", Some("g")),
            ivl("x", None),
            ivl("k", Some("k\0")),
        ]);
        assert_eq!(r.0, vec![ivl("b", Some("g")), ivl("k", Some("k\0")), ivl("x", None)]);
        assert!(r.contains(b"b") && r.contains(b"fzz") && r.contains(b"k") && r.contains(b"zzz"));
        assert!(!r.contains(b"a") && !r.contains(b"g") && !r.contains(b"k\0") && !r.contains(b"w"));
        assert!(r.covers(b"b", Some(b"g")));
        assert!(r.covers(b"c", Some(b"e")));
        assert!(!r.covers(b"a", Some(b"c")));
        assert!(!r.covers(b"c", Some(b"h")));
        assert!(!r.covers(b"b", None));
        assert!(r.covers(b"y", None));
        assert!(r.covers(b"x", Some(b"z")));
    }

    #[test]
    fn ranges_agree_with_a_brute_force_union() {
        let mut rng = rand::rng();
        let letter = |rng: &mut rand::rngs::ThreadRng| -> Vec<u8> {
            let n = rng.random_range(1..3);
            (0..n).map(|_| b'a' + rng.random_range(0..6u8)).collect()
        };
        for _ in 0..300 {
            let mut ivls = Vec::new();
            for _ in 0..rng.random_range(0..5) {
                let a = letter(&mut rng);
                let b = letter(&mut rng);
                let (s, e) = if a < b { (a, b) } else { (b, a) };
                if s == e {
                    continue;
                }
                let end = if rng.random_range(0..6) == 0 { None } else { Some(e) };
                ivls.push((s, end));
            }
            let r = Ranges::build(ivls.clone());
            let inside = |k: &[u8]| {
                ivls.iter().any(|(s, e)| s.as_slice() <= k && e.as_deref().is_none_or(|e| k < e))
            };
            // Every key of length <= 3 over the alphabet, plus \0 suffixes.
            let mut keys: Vec<Vec<u8>> = Vec::new();
            for a in b'a'..b'h' {
                keys.push(vec![a]);
                keys.push(vec![a, 0]);
                for b in b'a'..b'h' {
                    keys.push(vec![a, b]);
                    keys.push(vec![a, b, 0]);
                }
            }
            keys.sort();
            for k in &keys {
                assert_eq!(r.contains(k), inside(k), "{ivls:?} {k:?}");
            }
            // A range is covered iff every enumerated key inside it is.
            let (s, e) = (letter(&mut rng), letter(&mut rng));
            if s < e {
                let brute =
                    keys.iter().filter(|k| **k >= s && **k < e).all(|k| inside(k)) && inside(&s);
                assert_eq!(r.covers(&s, Some(&e)), brute, "{ivls:?} [{s:?}, {e:?})");
            }
        }
    }

    #[test]
    fn permission_ranges_follow_etcds_rules() {
        assert!(valid_permission_range(b"a", b""));
        assert!(valid_permission_range(b"a", b"\0"));
        assert!(valid_permission_range(b"a", b"b"));
        assert!(!valid_permission_range(b"", b"b"));
        assert!(!valid_permission_range(b"b", b"a"));
        assert!(!valid_permission_range(b"b", b"b"));
    }

    /// A store with auth on and root, at auth revision 5, handing out JWTs.
    fn jwt_store(dir: &std::path::Path) -> AuthStore {
        let secret = dir.join("secret");
        std::fs::write(&secret, "a shared secret").unwrap();
        let opts = JwtOptions {
            sign_method: "HS256".into(),
            public_key: None,
            private_key: Some(secret),
            ttl: std::time::Duration::from_secs(300),
        };
        let tokens = TokenProvider::new(&AuthToken::Jwt(opts), DEFAULT_TOKEN_TTL).unwrap();
        let store = AuthStore::new(tokens, DEFAULT_BCRYPT_COST);
        {
            let mut st = store.state.write();
            let root = User {
                name: ROOT_USER.into(),
                roles: vec![ROOT_ROLE.into()],
                ..Default::default()
            };
            st.users.insert(ROOT_USER.into(), root);
            st.revision = 5;
            st.refresh_perms();
        }
        store.enabled.store(true, Ordering::Release);
        store
    }

    #[test]
    fn a_jwt_from_an_older_auth_revision_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = jwt_store(dir.path());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let info = |token: &str| {
            let creds = Credentials { token: Some(token.into()), common_name: None };
            rt.block_on(store.info(&creds, || 0))
        };
        assert_eq!(store.token_prefix(), "");
        let token = store.sign_token(ROOT_USER, store.revision()).unwrap();
        let who = info(&token).unwrap().unwrap();
        assert_eq!(who, AuthInfo { user: ROOT_USER.into(), revision: 5 });
        assert!(store.check(Some(&who), b"k", b"", Access::Write).is_ok());
        assert!(store.check_still_current(Some(&who)).is_ok());

        // The store moves on (a user added, a password changed, ...): the
        // token still names root, at revision 5, and is refused as etcd
        // refuses it.
        store.state.write().revision = 6;
        let who = info(&token).unwrap().unwrap();
        assert_eq!(who.revision, 5);
        let err = store.check(Some(&who), b"k", b"", Access::Write).unwrap_err();
        assert!(matches!(err, Error::AuthOldRevision));
        assert!(matches!(store.check_still_current(Some(&who)), Err(Error::AuthOldRevision)));
        let status = tonic::Status::from(err);
        assert_eq!(
            (status.code(), status.message()),
            (tonic::Code::InvalidArgument, "etcdserver: revision of auth store is old")
        );

        // A token that is no JWT of ours.
        assert!(matches!(info("a.b.c"), Err(Error::InvalidAuthToken)));
        assert!(matches!(info("abcdefghijklmnop.12"), Err(Error::InvalidAuthToken)));
    }
}
