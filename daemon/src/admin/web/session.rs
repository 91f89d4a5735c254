//! Browser sessions: after a login with a token, the browser holds only a
//! random session id in a cookie (`HttpOnly`, `SameSite=Strict`, path
//! `/ui`), never the token. Sessions live in the memory of the process
//! serving the screen: a restart logs everyone out, which is the safe way
//! round (a token removed from the config cannot outlive a restart in a
//! cookie).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::Rng as _;

use crate::admin::Caller;

/// The cookie's name.
pub const COOKIE: &str = "ward_session";
/// How long a session lasts after its login, whatever it does: a tab left
/// open over a weekend has to log in again.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The most sessions kept; past it the oldest go first, so repeated logins
/// (each needs a valid token) cannot grow the process without bound.
const MAX_SESSIONS: usize = 10_000;

/// One logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who logged in: the token's name and role.
    pub caller: Caller,
    /// The per-session token every form carries (checked on each action,
    /// besides the same-origin check).
    pub csrf: String,
    /// When it ends.
    expires: Instant,
    /// A message for the next page shown (what the last action did).
    flash: Option<Flash>,
}

/// A message carried from an action to the page it redirects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    /// Whether it reports a failure.
    pub error: bool,
    /// The text (escaped when shown, like everything else).
    pub text: String,
}

/// Every live session, by id.
#[derive(Debug, Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, Session>>>,
}

/// 32 random bytes as hex: a session id or a CSRF token. `rand::rng()` is
/// a CSPRNG seeded from the OS.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock leaves the map consistent (every
        // change is one insert or remove), so a poisoned lock is usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a session for `caller`; its id, for the cookie.
    #[must_use]
    pub fn start(&self, caller: Caller) -> String {
        let id = random_hex();
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, s| s.expires > now);
        while map.len() >= MAX_SESSIONS {
            let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            map.remove(&oldest);
        }
        map.insert(
            id.clone(),
            Session {
                caller,
                csrf: random_hex(),
                expires: now + LIFETIME,
                flash: None,
            },
        );
        id
    }

    /// The live session `id`, with its flash message taken (shown once).
    #[must_use]
    pub fn get(&self, id: &str) -> Option<(Session, Option<Flash>)> {
        let mut map = self.lock();
        let s = map.get_mut(id)?;
        if s.expires <= Instant::now() {
            map.remove(id);
            return None;
        }
        let flash = s.flash.take();
        Some((s.clone(), flash))
    }

    /// Leaves `flash` for the next page session `id` sees.
    pub fn flash(&self, id: &str, flash: Flash) {
        if let Some(s) = self.lock().get_mut(id) {
            s.flash = Some(flash);
        }
    }

    /// Ends session `id` (log out).
    pub fn end(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// The `Set-Cookie` value that gives the browser session `id`; `secure`
/// (the browser reached Ward over HTTPS, through a trusted proxy) keeps
/// the browser from ever sending it over plain HTTP.
#[must_use]
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{}",
        LIFETIME.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes it.
#[must_use]
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The session id in a `Cookie` header, if any.
#[must_use]
pub fn from_cookie_header(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::admin::Role;

    fn caller() -> Caller {
        Caller {
            name: "ops".into(),
            role: Role::Operator,
            web: true,
        }
    }

    #[test]
    fn a_session_is_found_by_its_id_and_ends_at_logout() {
        let s = Sessions::default();
        let id = s.start(caller());
        assert_eq!(id.len(), 64);
        let (found, flash) = s.get(&id).unwrap();
        assert_eq!((found.caller.name.as_str(), flash), ("ops", None));
        assert_eq!(found.csrf.len(), 64);
        assert_ne!(found.csrf, id);
        assert!(s.get("nope").is_none());
        s.end(&id);
        assert!(s.get(&id).is_none());
    }

    #[test]
    fn a_flash_is_shown_once() {
        let s = Sessions::default();
        let id = s.start(caller());
        let f = Flash {
            error: false,
            text: "done".into(),
        };
        s.flash(&id, f.clone());
        assert_eq!(s.get(&id).unwrap().1, Some(f));
        assert_eq!(s.get(&id).unwrap().1, None);
    }

    #[test]
    fn the_cookie_is_read_among_others() {
        assert_eq!(
            from_cookie_header("a=1; ward_session=abc ; b=2"),
            Some("abc")
        );
        assert_eq!(from_cookie_header("ward_session="), None);
        assert_eq!(from_cookie_header("x_ward_session=abc"), None);
        assert!(set_cookie("abc", false).contains("HttpOnly; SameSite=Strict"));
        assert!(!set_cookie("abc", false).contains("Secure"));
        assert!(set_cookie("abc", true).ends_with("; Secure"));
        assert!(clear_cookie(true).ends_with("Max-Age=0; Secure"));
    }
}
