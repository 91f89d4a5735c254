//! Who calls: `Authorization: Bearer <token>`, looked up among the tokens
//! of `[[admin.token]]`, each with a name and a role.
//!
//! Token values are read from their secrets when the API starts and kept
//! as sha256 digests; a presented token is digested and compared with
//! every known digest in constant time (no early exit on the first
//! differing byte, none on a match), so timing says nothing of a value.

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::throttle::Refused;
use super::{Api, ApiError, StartError};
use crate::config::admin::{Role, TokenConfig};
use crate::control::Actor;

/// The fewest characters a token's value may have. With the limit on
/// failed authentications, even 16 random hex characters (64 bits) are
/// out of reach of guessing; a short or dictionary word is not.
pub const MIN_TOKEN_LEN: usize = 16;

/// The tokens the API accepts.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    known: Vec<Known>,
}

#[derive(Debug, Clone)]
struct Known {
    name: String,
    role: Role,
    digest: [u8; 32],
}

impl Tokens {
    /// Reads each token's value from its secret.
    ///
    /// # Errors
    /// [`StartError::Secret`] for a secret that is not set, is empty, or
    /// holds the same value as another token's (whose role would it be?).
    pub fn read(tokens: &[TokenConfig]) -> Result<Tokens, StartError> {
        let mut out = Tokens::default();
        for t in tokens {
            let value =
                crate::obs::secrets::resolve(&t.secret).map_err(|why| StartError::Secret {
                    token: t.name.clone(),
                    why,
                })?;
            out.add(&t.name, t.role, &value)?;
        }
        Ok(out)
    }

    /// Adds a token whose value is `value`.
    ///
    /// # Errors
    /// [`StartError::Secret`] when the value is shorter than
    /// [`MIN_TOKEN_LEN`] or another token has the same value.
    pub fn add(&mut self, name: &str, role: Role, value: &str) -> Result<(), StartError> {
        let len = value.chars().count();
        if len < MIN_TOKEN_LEN {
            return Err(StartError::Secret {
                token: name.to_string(),
                why: format!(
                    "its value is {len} characters, fewer than the {MIN_TOKEN_LEN} a token needs; use a long random value, like the output of `openssl rand -hex 32`"
                ),
            });
        }
        let digest = digest(value);
        if let Some(other) = self.known.iter().find(|k| k.digest == digest) {
            return Err(StartError::Secret {
                token: name.to_string(),
                why: format!(
                    "its secret holds the same value as token `{}`'s; give each token its own value",
                    other.name
                ),
            });
        }
        self.known.push(Known {
            name: name.to_string(),
            role,
            digest,
        });
        Ok(())
    }

    /// How many tokens there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// The caller presenting `token`, if it is one of ours. Every known
    /// token is compared, whichever matches.
    #[must_use]
    pub fn find(&self, token: &str) -> Option<Caller> {
        let presented = digest(token);
        let mut found = None;
        for k in &self.known {
            if same(&k.digest, &presented) {
                found = Some(Caller {
                    name: k.name.clone(),
                    role: k.role,
                    web: false,
                });
            }
        }
        found
    }
}

fn digest(value: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(value.as_bytes()).into()
}

/// Whether `a` and `b` are equal, looking at every byte whatever it finds.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A caller with a valid token: its name (the audit trail's actor) and role.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Caller {
    /// The token's name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Through the web screen (a session), not a bearer token per request.
    pub web: bool,
}

impl Caller {
    /// The actor of the audit entries its actions leave.
    #[must_use]
    pub fn actor(&self) -> Actor {
        if self.web {
            Actor::web(&self.name)
        } else {
            Actor::api(&self.name)
        }
    }

    /// Whether payloads are shown to it redacted.
    #[must_use]
    pub fn is_viewer(&self) -> bool {
        self.role == Role::Viewer
    }
}

impl FromRequestParts<Api> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Caller, ApiError> {
        let Some(header) = parts.headers.get(AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "no token: send `Authorization: Bearer <token>` (a token of [[admin.token]])",
            ));
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(ApiError::unauthorized(
                "the Authorization header must be `Bearer <token>`",
            ));
        };
        let peer = super::forwarded::Peer::of(parts).0;
        api.authenticate(token, peer, &parts.headers).map_err(|refused| match refused {
            Refused::Unknown => {
                ApiError::unauthorized("invalid token: it is none of [[admin.token]]")
            }
            Refused::Throttled(wait) => ApiError::too_many_requests(
                format!(
                    "too many failed authentications from your address; try again in {} s ([admin] failed_auth_limit)",
                    Refused::retry_after_secs(wait)
                ),
                wait,
            ),
        })
    }
}

/// A caller whose token has the `operator` role: the extractor of every
/// endpoint that changes something. A viewer gets 403 before the handler
/// runs, so nothing changes.
#[derive(Debug, Clone)]
pub struct Operator(pub Caller);

impl FromRequestParts<Api> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Operator, ApiError> {
        let caller = Caller::from_request_parts(parts, api).await?;
        if caller.role != Role::Operator {
            return Err(ApiError::forbidden(format!(
                "token `{}` has the viewer role, which only reads; this action needs an operator token",
                caller.name
            )));
        }
        Ok(Operator(caller))
    }
}

/// `GET /v1/whoami`: the caller's token name and role.
pub(super) async fn whoami(caller: Caller) -> Json<Caller> {
    Json(caller)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_found_by_its_value_only() {
        let mut t = Tokens::default();
        t.add("ci", Role::Operator, "op-secret-9c1e0a77").unwrap();
        t.add("ro", Role::Viewer, "ro-secret-4b2d8f10").unwrap();
        assert_eq!(
            t.find("op-secret-9c1e0a77").map(|c| c.role),
            Some(Role::Operator)
        );
        assert_eq!(
            t.find("ro-secret-4b2d8f10").map(|c| c.name),
            Some("ro".into())
        );
        assert_eq!(t.find("op-secret-9c1e0a7"), None);
        assert_eq!(t.find(""), None);
        assert!(t.add("dup", Role::Viewer, "ro-secret-4b2d8f10").is_err());
    }

    #[test]
    fn a_token_shorter_than_sixteen_characters_is_refused_with_its_name() {
        let mut t = Tokens::default();
        let err = t.add("ci", Role::Operator, "hunter2").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`ci`"), "{text}");
        assert!(
            text.contains("7 characters, fewer than the 16 a token needs"),
            "{text}"
        );
        assert!(t.is_empty());
        t.add("ci", Role::Operator, "0123456789abcdef").unwrap();
        assert_eq!(t.len(), 1, "16 is enough");
    }
}
