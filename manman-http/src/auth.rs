//! Authentication and authorization: the [`authenticate`] layer puts the [`Caller`] of every
//! request under `/api/v1` (but the public ones) in its extensions; each handler says what it
//! needs with an extractor — [`Access`] with a scope for operators, [`WorkerAccess`] for workers
//! (which also checks that the worker's credentials were not revoked since its token was made).

use crate::api::ApiState;
use crate::problem::ApiError;
use crate::request_id::RequestId;
use axum::extract::{FromRef, FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use manman_core::auth::{Caller, Scope};
use manman_core::command::Origin;
use manman_core::host::HostError;
use std::marker::PhantomData;

/// Authenticates the bearer token of a request and records its [`Caller`].
pub(crate) async fn authenticate(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    let bearer = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token);
    let Some(bearer) = bearer else {
        return ApiError(HostError::Unauthenticated {
            detail: "send `Authorization: Bearer <token>`: an operator token (`manman tokens`, or \
                     the admin token the host printed at its first start) or a worker token from \
                     POST /api/v1/auth/token"
                .to_owned(),
        })
        .into_response();
    };
    match state.auth.authenticate(bearer).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => ApiError(e).into_response(),
    }
}

/// The token of an `Authorization` value: the scheme `Bearer` in any case (RFC 9110: schemes
/// are case-insensitive), one or more spaces, a token that is not empty.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn caller(parts: &Parts) -> Result<Caller, ApiError> {
    parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
        ApiError(HostError::Unauthenticated {
            detail: "this request was not authenticated".to_owned(),
        })
    })
}

/// The scope a route needs, as a type: [`ReadScope`], [`OperateScope`], [`AdminScope`].
pub trait Needs: Send + Sync + 'static {
    /// The scope.
    const SCOPE: Scope;
}

/// Routes that only read.
#[derive(Debug)]
pub struct ReadScope;
/// Routes that change things.
#[derive(Debug)]
pub struct OperateScope;
/// Routes that manage tokens and credentials.
#[derive(Debug)]
pub struct AdminScope;

impl Needs for ReadScope {
    const SCOPE: Scope = Scope::Read;
}
impl Needs for OperateScope {
    const SCOPE: Scope = Scope::Operate;
}
impl Needs for AdminScope {
    const SCOPE: Scope = Scope::Admin;
}

/// An operator whose token has at least the scope `N` needs; anyone else is refused (403).
#[derive(Debug)]
pub struct Access<N: Needs> {
    /// The caller.
    pub caller: Caller,
    /// The request's id.
    pub request_id: Option<String>,
    needs: PhantomData<N>,
}

impl<N: Needs> Access<N> {
    /// The origin of the commands this request causes: the token's name as the issuer, the
    /// request id as their correlation id.
    pub fn origin(&self) -> Origin {
        let issued_by = match &self.caller {
            Caller::Operator { name, .. } => name.clone(),
            Caller::Worker { worker_name, .. } => format!("worker {worker_name}"),
        };
        Origin {
            issued_by,
            correlation_id: self.request_id.clone(),
        }
    }
}

impl<S: Send + Sync, N: Needs> FromRequestParts<S> for Access<N> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let caller = caller(parts)?;
        match &caller {
            Caller::Operator { scope, .. } if scope.allows(N::SCOPE) => Ok(Self {
                request_id: parts.extensions.get::<RequestId>().map(|id| id.0.clone()),
                caller,
                needs: PhantomData,
            }),
            Caller::Operator { scope, name, .. } => Err(ApiError(HostError::Forbidden {
                detail: format!(
                    "this needs a token with the {} scope; token {name:?} has {scope}",
                    N::SCOPE
                ),
            })),
            Caller::Worker { worker_name, .. } => Err(ApiError(HostError::Forbidden {
                detail: format!(
                    "worker {worker_name:?}'s token is for the /api/v1/worker routes only; \
                     operators use operator tokens"
                ),
            })),
        }
    }
}

/// A worker, with a token from credentials that still stand; operators are refused (403), a
/// worker whose credentials were revoked after its token was made is refused (401, naming the
/// revocation: one read of the store by key per request).
#[derive(Debug)]
pub struct WorkerAccess {
    /// The worker name its credentials act for.
    pub worker_name: String,
    /// The credentials' client id.
    pub client_id: String,
}

impl WorkerAccess {
    /// Refuses (403) acting for a worker of another name.
    pub fn check(&self, worker_name: &str, what: &str) -> Result<(), ApiError> {
        if worker_name == self.worker_name {
            Ok(())
        } else {
            Err(ApiError(HostError::Forbidden {
                detail: format!(
                    "{what} belongs to worker {worker_name:?}; this token acts for worker {:?} only",
                    self.worker_name
                ),
            }))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WorkerAccess
where
    ApiState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match caller(parts)? {
            Caller::Worker {
                worker_name,
                client_id,
            } => {
                ApiState::from_ref(state)
                    .auth
                    .check_worker_credential(&client_id)
                    .await?;
                Ok(Self {
                    worker_name,
                    client_id,
                })
            }
            Caller::Operator { name, .. } => Err(ApiError(HostError::Forbidden {
                detail: format!(
                    "the /api/v1/worker routes are for workers; token {name:?} is an operator's: \
                     a worker exchanges its credentials at POST /api/v1/auth/token"
                ),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case() {
        for value in [
            "Bearer mm_x",
            "bearer mm_x",
            "BEARER mm_x",
            "bEaReR   mm_x ",
        ] {
            assert_eq!(bearer_token(value), Some("mm_x"), "{value:?}");
        }
        for value in ["Basic mm_x", "Bearer", "Bearer   ", "Bearermm_x", "mm_x"] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }
}
