//! `[[alerts]]`: who is told when a branch stops answering. The webhook's URL is a secret read
//! from the environment: its variable is named in messages, its value never.

use super::super::raw::{RawAlert, S};
use super::super::{AlertConfig, Group, Language};
use super::{check_id, is_email, Ctx};
use crate::secret::Secret;

/// Visits in a row without an answer when `consecutive` is not written.
const DEFAULT_CONSECUTIVE: u32 = 3;

pub(super) fn alerts(
    cx: &mut Ctx<'_>,
    raws: &[S<RawAlert>],
    groups: &[Group],
    has_smtp: bool,
) -> Vec<AlertConfig> {
    let mut out: Vec<AlertConfig> = Vec::new();
    for r in raws {
        let a = r.get_ref();
        let id = a.id.get_ref();
        check_id(cx, &a.id, "alert");
        if out.iter().any(|x| &x.id == id) {
            cx.err(a.id.span(), format!("duplicate alert id {id:?}"));
        }
        let listed = a.groups.as_ref().map(|g| {
            for gid in g.get_ref() {
                if !groups.iter().any(|x| &x.id == gid) {
                    cx.err(g.span(), format!("alert {id:?}: unknown group {gid:?}"));
                }
            }
            if g.get_ref().is_empty() {
                cx.err(
                    g.span(),
                    format!("alert {id:?}: groups is empty (leave it out to watch every group)"),
                );
            }
            g.get_ref().clone()
        });
        let consecutive = match &a.consecutive {
            None => DEFAULT_CONSECUTIVE,
            Some(c) => match u32::try_from(*c.get_ref()) {
                Ok(n) if n >= 1 => n,
                _ => {
                    cx.err(
                        c.span(),
                        format!(
                            "alert {id:?}: consecutive must be a whole number of visits, at least 1 (not {})",
                            c.get_ref()
                        ),
                    );
                    DEFAULT_CONSECUTIVE
                }
            },
        };
        let to =
            a.to.as_ref()
                .map(|t| t.get_ref().clone())
                .unwrap_or_default();
        if let Some(t) = &a.to {
            for addr in t.get_ref() {
                if !is_email(addr) {
                    cx.err(
                        t.span(),
                        format!("alert {id:?}: to: invalid address {addr:?}"),
                    );
                }
            }
            if !to.is_empty() && !has_smtp {
                cx.err(
                    t.span(),
                    format!("alert {id:?}: mail needs an [smtp] table to leave by"),
                );
            }
        }
        let webhook = a.webhook_env.as_ref().and_then(|v| {
            let name = v.get_ref();
            match (cx.env)(name) {
                None => {
                    cx.err(
                        v.span(),
                        format!(
                            "alert {id:?}: webhook_env: environment variable {name} is not set \
                             (it must hold the webhook's URL)"
                        ),
                    );
                    None
                }
                Some(url) => {
                    let u = url.trim();
                    let ok = (u.starts_with("https://") || u.starts_with("http://"))
                        && u.len() > "https://".len()
                        && !u.contains(char::is_whitespace);
                    if ok {
                        Some(Secret::new(u.to_owned()))
                    } else {
                        // Never quote the value: a webhook URL often carries a token.
                        cx.err(
                            v.span(),
                            format!(
                                "alert {id:?}: webhook_env: {name} does not hold an http:// or \
                                 https:// URL"
                            ),
                        );
                        None
                    }
                }
            }
        });
        if to.is_empty() && a.webhook_env.is_none() {
            cx.err(
                r.span(),
                format!("alert {id:?}: nobody to tell: give `to` addresses or a `webhook_env`"),
            );
        }
        let language = a
            .language
            .as_ref()
            .and_then(|l| match l.get_ref().as_str() {
                "fr" => Some(Language::Fr),
                "en" => Some(Language::En),
                other => {
                    cx.err(
                        l.span(),
                        format!("alert {id:?}: language: fr or en, not {other:?}"),
                    );
                    None
                }
            });
        out.push(AlertConfig {
            id: id.clone(),
            groups: listed,
            consecutive,
            to,
            webhook,
            webhook_env: a.webhook_env.as_ref().map(|v| v.get_ref().clone()),
            language,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::from_str;
    use std::path::Path;

    const BASE: &str = r#"
[smtp]
host = "127.0.0.1"

[[groups]]
id = "nord"
name = "Réseau Nord"
"#;

    fn check(extra: &str, env: &[(&str, &str)]) -> Result<crate::config::Config, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        from_str(
            Path::new("/etc/mystery/mystery.toml"),
            &format!("{BASE}{extra}"),
            &lookup,
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_good_alert_is_read_with_its_defaults() {
        let c = check(
            "\n[[alerts]]\nid = \"silence\"\nto = [\"qualite@franchise.test\"]\n",
            &[],
        )
        .unwrap();
        let a = &c.alerts[0];
        assert_eq!(a.consecutive, 3);
        assert!(a.groups.is_none() && a.webhook.is_none());
        assert!(a.watches(Some("nord")) && a.watches(None));
    }

    #[test]
    fn each_mistake_is_an_error_at_its_line() {
        let text = "\n[[alerts]]\nid = \"a\"\ngroups = [\"sud\"]\nconsecutive = 0\nto = [\"pas une adresse\"]\nwebhook_env = \"MYSTERY_TEST_UNSET_HOOK\"\n";
        let e = check(text, &[]).unwrap_err();
        // BASE ends on line 7; `[[alerts]]` is on line 9.
        assert!(
            e.contains("mystery.toml:11: alert \"a\": unknown group \"sud\""),
            "{e}"
        );
        assert!(
            e.contains("mystery.toml:12: alert \"a\": consecutive must be"),
            "{e}"
        );
        assert!(
            e.contains("mystery.toml:13: alert \"a\": to: invalid address \"pas une adresse\""),
            "{e}"
        );
        assert!(
            e.contains("mystery.toml:14: alert \"a\": webhook_env: environment variable MYSTERY_TEST_UNSET_HOOK is not set"),
            "{e}"
        );
    }

    #[test]
    fn a_webhook_url_that_is_not_http_is_refused_without_being_quoted() {
        let text = "\n[[alerts]]\nid = \"a\"\nwebhook_env = \"HOOK\"\n";
        let e = check(text, &[("HOOK", "ftp://token-s3cr3t@hooks.test/x")]).unwrap_err();
        assert!(
            e.contains("HOOK does not hold an http:// or https:// URL"),
            "{e}"
        );
        assert!(!e.contains("s3cr3t"), "{e}");
        let c = check(text, &[("HOOK", "https://hooks.test/T0K3N")]).unwrap();
        assert_eq!(
            c.alerts[0].webhook.as_ref().unwrap().expose(),
            "https://hooks.test/T0K3N"
        );
        assert!(!format!("{:?}", c.alerts[0]).contains("T0K3N"));
    }

    #[test]
    fn an_alert_that_tells_nobody_or_names_an_unknown_key_is_refused() {
        let e = check("\n[[alerts]]\nid = \"a\"\n", &[]).unwrap_err();
        assert!(e.contains("nobody to tell"), "{e}");
        let e = check(
            "\n[[alerts]]\nid = \"a\"\nto = [\"q@x.test\"]\nrepeat = true\n",
            &[],
        )
        .unwrap_err();
        assert!(e.contains("repeat"), "{e}");
    }
}
