//! The etcd Auth service: enabling auth, authenticating, and managing users
//! and roles. Changes go through Raft ([`crate::state::auth`] applies them); reads
//! are answered from this member's copy after a read index, so they are
//! linearizable like etcd's.

use std::sync::Arc;

use logbook_api::etcdserverpb::auth_server::Auth;
use logbook_api::etcdserverpb::{
    AuthDisableRequest, AuthDisableResponse, AuthEnableRequest, AuthEnableResponse,
    AuthRoleAddRequest, AuthRoleAddResponse, AuthRoleDeleteRequest, AuthRoleDeleteResponse,
    AuthRoleGetRequest, AuthRoleGetResponse, AuthRoleGrantPermissionRequest,
    AuthRoleGrantPermissionResponse, AuthRoleListRequest, AuthRoleListResponse,
    AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse, AuthStatusRequest,
    AuthStatusResponse, AuthUserAddRequest, AuthUserAddResponse, AuthUserChangePasswordRequest,
    AuthUserChangePasswordResponse, AuthUserDeleteRequest, AuthUserDeleteResponse,
    AuthUserGetRequest, AuthUserGetResponse, AuthUserGrantRoleRequest, AuthUserGrantRoleResponse,
    AuthUserListRequest, AuthUserListResponse, AuthUserRevokeRoleRequest,
    AuthUserRevokeRoleResponse, AuthenticateRequest, AuthenticateResponse, ResponseHeader,
};
use logbook_api::logbookpb;
use logbook_api::logbookpb::internal_request::Request as Internal;
use tonic::{Request, Response, Status};

use crate::error::{Error, Result};
use crate::services::context::Context;
use crate::state::apply::Applied;

/// Serves Auth.
pub struct AuthService {
    pub ctx: Arc<Context>,
}

impl AuthService {
    fn header(&self, revision: i64) -> Option<ResponseHeader> {
        Some(self.ctx.header(revision))
    }

    fn current_header(&self) -> Option<ResponseHeader> {
        self.header(self.ctx.engine().current_revision())
    }

    /// Proposes an auth change on behalf of the request's caller.
    async fn change<T>(
        &self,
        request: &Request<T>,
        change: Internal,
    ) -> Result<Option<ResponseHeader>> {
        let who = self.ctx.auth_info(request).await?;
        match self.ctx.raft.propose_as(change, who.as_ref()).await? {
            (Applied::Auth(_), revision) => Ok(self.header(revision)),
            (other, _) => panic!("an auth change was applied as {other:?}"),
        }
    }

    async fn authenticate_inner(&self, r: AuthenticateRequest) -> Result<AuthenticateResponse> {
        self.ctx.raft.read_index().await?;
        // If the user or its password changed between the check and the
        // token's entry, check again (as etcd does).
        for _ in 0..5 {
            let ctx = self.ctx.clone();
            let (name, password) = (r.name.clone(), r.password.clone());
            let checked_at = tokio::task::spawn_blocking(move || {
                ctx.stores.auth.check_password(&name, &password)
            })
            .await
            .map_err(|e| Error::Internal(format!("password check: {e}")))??;
            let req = logbookpb::AuthenticateRequest {
                name: r.name.clone(),
                simple_token: self.ctx.stores.auth.token_prefix(),
            };
            let (applied, revision) = self.ctx.raft.propose(Internal::Authenticate(req)).await?;
            let Applied::Auth(token) = applied else {
                panic!("an Authenticate was applied as {applied:?}");
            };
            if checked_at == self.ctx.stores.auth.revision() {
                let token = match token {
                    Some(simple) => simple,
                    None => self.sign(r.name.clone(), checked_at).await?,
                };
                return Ok(AuthenticateResponse { header: self.header(revision), token });
            }
        }
        Err(Error::AuthOldRevision)
    }

    /// A JWT for `user` at auth `revision` (signing is CPU work: off the
    /// async threads).
    async fn sign(&self, user: String, revision: u64) -> Result<String> {
        let ctx = self.ctx.clone();
        tokio::task::spawn_blocking(move || ctx.stores.auth.sign_token(&user, revision))
            .await
            .map_err(|e| Error::Internal(format!("token signing: {e}")))?
    }

    async fn hash(&self, password: String) -> Result<String> {
        let ctx = self.ctx.clone();
        tokio::task::spawn_blocking(move || ctx.stores.auth.hash_password(&password))
            .await
            .map_err(|e| Error::Internal(format!("password hashing: {e}")))?
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        request: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        let header = self.change(&request, Internal::AuthEnable(AuthEnableRequest {})).await?;
        Ok(Response::new(AuthEnableResponse { header }))
    }

    async fn auth_disable(
        &self,
        request: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        let header = self.change(&request, Internal::AuthDisable(AuthDisableRequest {})).await?;
        Ok(Response::new(AuthDisableResponse { header }))
    }

    async fn auth_status(
        &self,
        _request: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        self.ctx.raft.read_index().await?;
        let (enabled, auth_revision) = self.ctx.stores.auth.status();
        Ok(Response::new(AuthStatusResponse {
            header: self.current_header(),
            enabled,
            auth_revision,
        }))
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        Ok(Response::new(self.authenticate_inner(request.into_inner()).await?))
    }

    async fn user_add(
        &self,
        request: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        // Refuse early what needs no hashing to refuse.
        let who = self.ctx.auth_info(&request).await?;
        self.ctx.stores.auth.check_admin(who.as_ref())?;
        let mut r = request.get_ref().clone();
        if r.name.is_empty() {
            return Err(Error::UserEmpty.into());
        }
        if !r.options.as_ref().is_some_and(|o| o.no_password) {
            r.hashed_password = self.hash(std::mem::take(&mut r.password)).await?;
        }
        r.password.clear();
        let header = self.change(&request, Internal::AuthUserAdd(r)).await?;
        Ok(Response::new(AuthUserAddResponse { header }))
    }

    async fn user_get(
        &self,
        request: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        let who = self.ctx.auth_info(&request).await?;
        self.ctx.raft.read_index().await?;
        let roles = self.ctx.stores.auth.user_roles(who.as_ref(), &request.get_ref().name)?;
        Ok(Response::new(AuthUserGetResponse { header: self.current_header(), roles }))
    }

    async fn user_list(
        &self,
        request: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        let who = self.ctx.auth_info(&request).await?;
        self.ctx.raft.read_index().await?;
        let users = self.ctx.stores.auth.user_names(who.as_ref())?;
        Ok(Response::new(AuthUserListResponse { header: self.current_header(), users }))
    }

    async fn user_delete(
        &self,
        request: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        let r = request.get_ref().clone();
        let header = self.change(&request, Internal::AuthUserDelete(r)).await?;
        Ok(Response::new(AuthUserDeleteResponse { header }))
    }

    async fn user_change_password(
        &self,
        request: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let who = self.ctx.auth_info(&request).await?;
        self.ctx.stores.auth.check_admin(who.as_ref())?;
        let mut r = request.get_ref().clone();
        r.hashed_password = self.hash(std::mem::take(&mut r.password)).await?;
        let header = self.change(&request, Internal::AuthUserChangePassword(r)).await?;
        Ok(Response::new(AuthUserChangePasswordResponse { header }))
    }

    async fn user_grant_role(
        &self,
        request: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        let r = request.get_ref().clone();
        let header = self.change(&request, Internal::AuthUserGrantRole(r)).await?;
        Ok(Response::new(AuthUserGrantRoleResponse { header }))
    }

    async fn user_revoke_role(
        &self,
        request: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        let r = request.get_ref().clone();
        let header = self.change(&request, Internal::AuthUserRevokeRole(r)).await?;
        Ok(Response::new(AuthUserRevokeRoleResponse { header }))
    }

    async fn role_add(
        &self,
        request: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        let r = request.get_ref().clone();
        let header = self.change(&request, Internal::AuthRoleAdd(r)).await?;
        Ok(Response::new(AuthRoleAddResponse { header }))
    }

    async fn role_get(
        &self,
        request: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        let who = self.ctx.auth_info(&request).await?;
        self.ctx.raft.read_index().await?;
        let perm = self.ctx.stores.auth.role_permissions(who.as_ref(), &request.get_ref().role)?;
        Ok(Response::new(AuthRoleGetResponse { header: self.current_header(), perm }))
    }

    async fn role_list(
        &self,
        request: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        let who = self.ctx.auth_info(&request).await?;
        self.ctx.raft.read_index().await?;
        let roles = self.ctx.stores.auth.role_names(who.as_ref())?;
        Ok(Response::new(AuthRoleListResponse { header: self.current_header(), roles }))
    }

    async fn role_delete(
        &self,
        request: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        let r = request.get_ref().clone();
        let header = self.change(&request, Internal::AuthRoleDelete(r)).await?;
        Ok(Response::new(AuthRoleDeleteResponse { header }))
    }

    async fn role_grant_permission(
        &self,
        request: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        let r = request.get_ref().clone();
        let header = self.change(&request, Internal::AuthRoleGrantPermission(r)).await?;
        Ok(Response::new(AuthRoleGrantPermissionResponse { header }))
    }

    async fn role_revoke_permission(
        &self,
        request: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        let r = request.get_ref().clone();
        let header = self.change(&request, Internal::AuthRoleRevokePermission(r)).await?;
        Ok(Response::new(AuthRoleRevokePermissionResponse { header }))
    }
}
