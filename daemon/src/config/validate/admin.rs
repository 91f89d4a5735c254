//! `[admin]`, checked: an address to listen on, and tokens that each have
//! a unique name, a role, and a secret to read their value from (never
//! the value itself).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use ipnet::IpNet;

use crate::config::admin::{AdminConfig, RawAdmin, RawToken, Role, TokenConfig};
use crate::config::observability::SECRET_PREFIX;

/// Validates `[admin]`; every problem goes to `problem`.
pub fn validate(raw: RawAdmin, problem: &mut dyn FnMut(Range<usize>, String)) -> AdminConfig {
    let mut out = AdminConfig::default();
    if let Some(listen) = &raw.listen {
        match listen.get_ref().parse::<SocketAddr>() {
            Ok(addr) => out.listen = Some(addr),
            Err(_) => problem(
                listen.span(),
                format!(
                    "[admin] listen `{}` is not an address; write it like \"127.0.0.1:9470\"",
                    listen.get_ref()
                ),
            ),
        }
        if raw.tokens.is_empty() {
            problem(
                listen.span(),
                "[admin] listen is set but no [[admin.token]] is: the API would refuse every request; add a token with name, role and secret".into(),
            );
        }
    }
    if let Some(limit) = &raw.failed_auth_limit {
        match u32::try_from(*limit.get_ref()) {
            Ok(n) => out.failed_auth_limit = n,
            Err(_) => problem(
                limit.span(),
                format!(
                    "[admin] failed_auth_limit {} is not a count; write how many failed authentications one address may make a minute, like 10 (0: no limit)",
                    limit.get_ref()
                ),
            ),
        }
    }
    for proxy in raw.trusted_proxies.iter().flatten() {
        match parse_proxy(proxy.get_ref()) {
            Some(net) => out.trusted_proxies.push(net),
            None => problem(
                proxy.span(),
                format!(
                    "[admin] trusted_proxies entry `{}` is neither an IP address nor a CIDR range; write the proxy's address or its network, like \"127.0.0.1\", \"::1\" or \"10.0.0.0/8\"",
                    proxy.get_ref()
                ),
            ),
        }
    }
    let mut names = BTreeSet::new();
    for t in raw.tokens {
        let span = t.span();
        let name_span = t.get_ref().name.as_ref().map_or(span.clone(), |n| n.span());
        if let Some(token) = check_token(t.into_inner(), span, problem) {
            if !names.insert(token.name.clone()) {
                problem(
                    name_span,
                    format!(
                        "[[admin.token]] name `{}` is used twice; each token needs its own name (it is the actor of the audit trail)",
                        token.name
                    ),
                );
            }
            out.tokens.push(token);
        }
    }
    out
}

fn check_token(
    t: RawToken,
    table: Range<usize>,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> Option<TokenConfig> {
    let mut ok = true;
    for clear in [&t.value, &t.token].into_iter().flatten() {
        ok = false;
        problem(
            clear.span(),
            "[[admin.token]] a token's value must not be written in the config file; put it in an environment variable or a file of $CREDENTIALS_DIRECTORY and name that with `secret = \"NAME\"`".into(),
        );
    }
    let name = match t.name {
        Some(n) if !n.get_ref().trim().is_empty() => Some(n.into_inner()),
        Some(n) => {
            problem(n.span(), "[[admin.token]] name must not be empty".into());
            None
        }
        None => {
            problem(
                table.clone(),
                "[[admin.token]] needs a name (shown in the audit trail)".into(),
            );
            None
        }
    };
    let role = match t.role {
        Some(r) => match r.get_ref().as_str() {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            other => {
                problem(
                    r.span(),
                    format!(
                        "[[admin.token]] role `{other}` is not a role; write \"viewer\" or \"operator\""
                    ),
                );
                None
            }
        },
        None => {
            problem(
                table.clone(),
                "[[admin.token]] needs a role: \"viewer\" or \"operator\"".into(),
            );
            None
        }
    };
    let secret = match t.secret {
        Some(s) => {
            let written = s.get_ref();
            let bare = written
                .strip_prefix(SECRET_PREFIX)
                .unwrap_or(written)
                .trim();
            if crate::secret::valid_name(bare) {
                Some(bare.to_string())
            } else {
                problem(
                    s.span(),
                    "[[admin.token]] secret must be the NAME of a secret (letters, digits and `_`, like \"WARD_ADMIN_TOKEN\"), never the token itself: the value is read from the environment variable of that name or $CREDENTIALS_DIRECTORY/NAME".into(),
                );
                None
            }
        }
        None => {
            problem(
                table,
                "[[admin.token]] needs `secret = \"NAME\"`: the environment variable (or $CREDENTIALS_DIRECTORY file) holding the token".into(),
            );
            None
        }
    };
    match (ok, name, role, secret) {
        (true, Some(name), Some(role), Some(secret)) => Some(TokenConfig { name, role, secret }),
        _ => None,
    }
}

/// A `trusted_proxies` entry: an address (a one-address range) or a CIDR
/// range, its host bits dropped (`10.1.2.3/8` is `10.0.0.0/8`).
fn parse_proxy(text: &str) -> Option<IpNet> {
    let text = text.trim();
    if text.contains('/') {
        text.parse::<IpNet>().ok().map(|net| net.trunc())
    } else {
        text.parse::<IpAddr>().ok().map(IpNet::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn check(text: &str) -> (AdminConfig, Vec<String>) {
        #[derive(Deserialize)]
        struct Tables {
            #[serde(default)]
            admin: RawAdmin,
        }
        let t: Tables = toml::from_str(text).unwrap();
        let mut problems = Vec::new();
        let cfg = validate(t.admin, &mut |_, m| problems.push(m));
        (cfg, problems)
    }

    #[test]
    fn off_unless_listen_is_set() {
        let (cfg, problems) = check("");
        assert!(problems.is_empty() && cfg.listen.is_none() && cfg.tokens.is_empty());
    }

    #[test]
    fn tokens_name_a_role_and_a_secret() {
        let (cfg, problems) = check(
            "[admin]\nlisten = \"127.0.0.1:9470\"\n[[admin.token]]\nname = \"ci\"\nrole = \"operator\"\nsecret = \"WARD_CI\"\n[[admin.token]]\nname = \"ro\"\nrole = \"viewer\"\nsecret = \"secret:WARD_RO\"\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(cfg.listen, Some("127.0.0.1:9470".parse().unwrap()));
        assert_eq!(
            cfg.tokens,
            vec![
                TokenConfig {
                    name: "ci".into(),
                    role: Role::Operator,
                    secret: "WARD_CI".into()
                },
                TokenConfig {
                    name: "ro".into(),
                    role: Role::Viewer,
                    secret: "WARD_RO".into()
                },
            ]
        );
    }

    #[test]
    fn a_token_in_clear_is_refused_and_every_other_problem_reported() {
        let (cfg, problems) = check(
            "[admin]\nlisten = \"nowhere\"\n[[admin.token]]\nname = \"ci\"\nrole = \"operator\"\nvalue = \"hunter2\"\n[[admin.token]]\nname = \"ci\"\nrole = \"root\"\nsecret = \"abc-def-123\"\n[[admin.token]]\nname = \"x\"\nrole = \"viewer\"\nsecret = \"OK\"\n[[admin.token]]\nname = \"x\"\nrole = \"viewer\"\nsecret = \"OK2\"\n",
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("must not be written in the config file")),
            "{problems:#?}"
        );
        // listen, value (+ missing secret), role, secret, duplicate name.
        assert_eq!(problems.len(), 6, "{problems:#?}");
        assert!(cfg.tokens.iter().all(|t| t.name == "x"));
    }

    #[test]
    fn the_failed_auth_limit_is_ten_unless_set_and_a_count_when_set() {
        let (cfg, problems) = check("");
        assert!(problems.is_empty());
        assert_eq!(cfg.failed_auth_limit, 10);
        let (cfg, problems) = check("[admin]\nfailed_auth_limit = 0\n");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(cfg.failed_auth_limit, 0, "no limit");
        let (_, problems) = check("[admin]\nfailed_auth_limit = -3\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("failed_auth_limit -3 is not a count"),
            "{problems:?}"
        );
    }

    #[test]
    fn trusted_proxies_are_ip_addresses_or_cidr_ranges() {
        let (cfg, problems) = check(
            "[admin]\ntrusted_proxies = [\"127.0.0.1\", \"::1\", \"10.0.0.0/8\", \"fd00::/8\", \"192.168.7.9/24\"]\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let nets: Vec<String> = cfg
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            nets,
            [
                "127.0.0.1/32",
                "::1/128",
                "10.0.0.0/8",
                "fd00::/8",
                "192.168.7.0/24"
            ],
            "a bare address is a one-address range; host bits are dropped"
        );
        for bad in ["10.0.0.0/33", "proxy.local", "10.0.0.0/", "::1/129"] {
            let (_, problems) = check(&format!("[admin]\ntrusted_proxies = [\"{bad}\"]\n"));
            assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
            assert!(
                problems[0].contains(&format!(
                    "`{bad}` is neither an IP address nor a CIDR range"
                )),
                "{problems:?}"
            );
        }
    }

    #[test]
    fn listen_without_a_token_is_a_problem() {
        let (_, problems) = check("[admin]\nlisten = \"127.0.0.1:0\"\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
    }
}
