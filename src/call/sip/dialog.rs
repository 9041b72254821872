//! The UAC side of one dialog (RFC 3261 12): identifiers, route set and the requests we send
//! in it — INVITE, ACK, CANCEL, BYE — and our answers to the peer's in-dialog requests.
//!
//! Invariant: Call-ID and From tag never change; CSeq only grows; the To tag and remote
//! target are fixed by the first 2xx; every request gets a fresh RFC 3261 branch except ACK
//! for a non-2xx and CANCEL, which reuse the INVITE's (17.1.1.3, 9.1).

use super::message::{self, header};
use super::transport::{encode, response_to};
use rsip::{Header, Headers, Method, Request, SipMessage};

/// Max-Forwards of every request we originate (RFC 3261 8.1.1.6).
pub const MAX_FORWARDS: u32 = 70;
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE";

#[derive(Debug, thiserror::Error)]
pub enum DialogError {
    #[error("not a usable SIP URI: {0}")]
    Uri(String),
}

/// A Via branch with the RFC 3261 magic cookie.
pub fn new_branch() -> String {
    format!("z9hG4bK{}", hex::encode(rand::random::<[u8; 10]>()))
}

pub fn new_tag() -> String {
    hex::encode(rand::random::<[u8; 6]>())
}

/// Static parameters of our endpoint, the same for every call.
#[derive(Debug, Clone)]
pub struct Local {
    /// `ip:port` as written in Via and Contact.
    pub hostport: String,
    /// `UDP` or `TCP` as written in Via.
    pub transport: &'static str,
    /// The `[sip] from` URI: the trunk account, and the domain our From keeps.
    pub from_uri: String,
    /// Who the call comes from, when the persona has a phone: shown instead of the account.
    pub caller: Option<crate::call::Caller>,
    /// `[sip] user_agent`; without it no User-Agent header is sent (DESIGN.md "Look human").
    pub user_agent: Option<String>,
    /// Route to preload for a loose-routing outbound proxy.
    pub proxy_route: Option<String>,
}

impl Local {
    /// The user part we show: the persona's number, else the account's user.
    fn user(&self) -> Option<String> {
        if let Some(c) = &self.caller {
            return Some(c.number.clone());
        }
        self.from_uri
            .trim_start_matches("sips:")
            .trim_start_matches("sip:")
            .split_once('@')
            .map(|(u, _)| u.to_string())
            .filter(|u| !u.is_empty())
    }

    fn contact(&self) -> String {
        let transport = if self.transport == "TCP" {
            ";transport=tcp"
        } else {
            ""
        };
        match self.user() {
            Some(user) => format!("<sip:{user}@{}{transport}>", self.hostport),
            None => format!("<sip:{}{transport}>", self.hostport),
        }
    }

    /// The From name-addr without its tag: the persona (quoted name, number as user part, the
    /// `[sip] from` domain), or the account URI as configured.
    pub fn from_addr(&self) -> String {
        let Some(caller) = &self.caller else {
            return format!("<{}>", self.from_uri);
        };
        let (scheme, rest) = match self.from_uri.strip_prefix("sips:") {
            Some(rest) => ("sips", rest),
            None => ("sip", self.from_uri.trim_start_matches("sip:")),
        };
        let domain = rest.rsplit_once('@').map_or(rest, |(_, d)| d);
        let uri = format!("{scheme}:{}@{domain}", caller.number);
        match quoted(&caller.name) {
            Some(name) => format!("{name} <{uri}>"),
            None => format!("<{uri}>"),
        }
    }
}

/// A display name as an RFC 3261 quoted-string (`"` and `\` escaped, line breaks dropped);
/// None when nothing printable is left.
fn quoted(name: &str) -> Option<String> {
    let mut out = String::from("\"");
    for c in name.trim().chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    (out.len() > 2).then_some(out)
}

#[derive(Debug)]
pub struct Dialog {
    pub local: Local,
    pub call_id: String,
    pub local_tag: String,
    /// The initial Request-URI (also the To URI).
    pub target: String,
    pub cseq: u32,
    pub invite_cseq: u32,
    pub remote_tag: Option<String>,
    /// The peer's Contact from the 2xx: the Request-URI of in-dialog requests.
    pub remote_target: Option<String>,
    /// Record-Route of the 2xx, reversed (RFC 3261 12.1.2).
    pub route_set: Vec<String>,
}

/// A request ready to send and the branch that identifies its transaction.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub bytes: Vec<u8>,
    pub branch: String,
    pub method: Method,
    pub request_uri: String,
}

impl Dialog {
    pub fn new(local: Local, target: &str) -> Self {
        // Random, naming nothing: a Call-ID is seen by every hop (RFC 3261 8.1.1.4).
        let id = hex::encode(rand::random::<[u8; 12]>());
        let call_id = match local.hostport.rsplit_once(':') {
            Some((host, _)) if !host.is_empty() => format!("{id}@{host}"),
            _ => id,
        };
        Self {
            call_id,
            local_tag: new_tag(),
            target: target.to_string(),
            cseq: 0,
            invite_cseq: 0,
            remote_tag: None,
            remote_target: None,
            route_set: Vec::new(),
            local,
        }
    }

    fn their_to(&self) -> String {
        match &self.remote_tag {
            Some(t) => format!("<{}>;tag={t}", self.target),
            None => format!("<{}>", self.target),
        }
    }

    fn our_from(&self) -> String {
        format!("{};tag={}", self.local.from_addr(), self.local_tag)
    }

    fn via(&self, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {};rport;branch={branch}",
            self.local.transport, self.local.hostport
        )
    }

    /// Routes for a request: the dialog's route set once established, else the proxy's.
    fn routes(&self, in_dialog: bool) -> Vec<String> {
        if in_dialog && !self.route_set.is_empty() {
            return self.route_set.clone();
        }
        self.local
            .proxy_route
            .iter()
            .map(|r| {
                format!(
                    "<{}>",
                    r.trim().trim_start_matches('<').trim_end_matches('>')
                )
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        method: Method,
        uri: &str,
        branch: &str,
        cseq: u32,
        routes: &[String],
        extra: &[(&str, String)],
        body: Option<(&str, &str)>,
        to: Option<Header>,
    ) -> Result<Outgoing, DialogError> {
        let parsed_uri = rsip::Uri::try_from(uri).map_err(|_| DialogError::Uri(uri.to_string()))?;
        let mut h: Vec<rsip::Header> = vec![
            header("Via", self.via(branch)),
            header("Max-Forwards", MAX_FORWARDS.to_string()),
        ];
        h.extend(routes.iter().map(|r| header("Route", r.clone())));
        h.push(header("From", self.our_from()));
        h.push(to.unwrap_or_else(|| header("To", self.their_to())));
        h.push(header("Call-ID", self.call_id.clone()));
        h.push(header("CSeq", format!("{cseq} {method}")));
        if matches!(method, Method::Invite) {
            h.push(header("Contact", self.local.contact()));
            h.push(header("Allow", ALLOW));
        }
        for (n, v) in extra {
            h.push(header(n, v.clone()));
        }
        if let Some(ua) = &self.local.user_agent {
            h.push(header("User-Agent", ua.clone()));
        }
        let body = match body {
            Some((ctype, b)) => {
                h.push(header("Content-Type", ctype));
                b.as_bytes().to_vec()
            }
            None => Vec::new(),
        };
        h.push(header("Content-Length", body.len().to_string()));
        let req = Request {
            method,
            uri: parsed_uri,
            version: rsip::Version::V2,
            headers: Headers::from(h),
            body,
        };
        Ok(Outgoing {
            bytes: req.to_string().into_bytes(),
            branch: branch.to_string(),
            method,
            request_uri: uri.to_string(),
        })
    }

    /// A new INVITE (the first one, or a retry carrying credentials) with a fresh branch.
    pub fn invite(&mut self, sdp: &str, auth: &[(&str, String)]) -> Result<Outgoing, DialogError> {
        self.cseq += 1;
        self.invite_cseq = self.cseq;
        let target = self.target.clone();
        self.build(
            Method::Invite,
            &target,
            &new_branch(),
            self.cseq,
            &self.routes(false),
            auth,
            Some(("application/sdp", sdp)),
            None,
        )
    }

    /// ACK for a non-2xx final: same branch, Request-URI and CSeq number as the INVITE, To
    /// from the response (RFC 3261 17.1.1.3).
    pub fn ack_for_failure(
        &self,
        invite: &Outgoing,
        response: &SipMessage,
    ) -> Result<Outgoing, DialogError> {
        // The To of the response, tag included, verbatim (RFC 3261 17.1.1.3).
        let to = message::headers_of(response)
            .iter()
            .find(|h| matches!(h, Header::To(_)))
            .cloned();
        self.build(
            Method::Ack,
            &invite.request_uri,
            &invite.branch,
            self.invite_cseq,
            &self.routes(false),
            &[],
            None,
            to,
        )
    }

    /// Fixes the dialog from the 2xx: remote tag, remote target, route set.
    pub fn confirm(&mut self, ok: &SipMessage) {
        self.remote_tag = message::to_tag(ok);
        self.remote_target = message::contact_uri(ok);
        self.route_set = message::record_routes(ok).into_iter().rev().collect();
    }

    fn in_dialog_uri(&self) -> String {
        self.remote_target
            .clone()
            .filter(|t| rsip::Uri::try_from(t.as_str()).is_ok())
            .unwrap_or_else(|| self.target.clone())
    }

    /// ACK for a 2xx: its own transaction-less request, new branch (RFC 3261 13.2.2.4).
    pub fn ack_for_success(&self) -> Result<Outgoing, DialogError> {
        self.build(
            Method::Ack,
            &self.in_dialog_uri(),
            &new_branch(),
            self.invite_cseq,
            &self.routes(true),
            &[],
            None,
            None,
        )
    }

    /// CANCEL of a pending INVITE: same branch, Request-URI, Route and CSeq number (9.1).
    pub fn cancel(&self, invite: &Outgoing) -> Result<Outgoing, DialogError> {
        // A CANCEL's To has no tag even if a provisional brought one (RFC 3261 9.1).
        let unconfirmed = Dialog {
            remote_tag: None,
            local: self.local.clone(),
            call_id: self.call_id.clone(),
            local_tag: self.local_tag.clone(),
            target: self.target.clone(),
            cseq: self.cseq,
            invite_cseq: self.invite_cseq,
            remote_target: None,
            route_set: Vec::new(),
        };
        unconfirmed.build(
            Method::Cancel,
            &invite.request_uri,
            &invite.branch,
            self.invite_cseq,
            &self.routes(false),
            &[],
            None,
            None,
        )
    }

    pub fn bye(&mut self, auth: &[(&str, String)]) -> Result<Outgoing, DialogError> {
        self.cseq += 1;
        self.build(
            Method::Bye,
            &self.in_dialog_uri(),
            &new_branch(),
            self.cseq,
            &self.routes(true),
            auth,
            None,
            None,
        )
    }

    /// Our answer to a request the peer sent in this dialog, or None for ACK (never answered).
    /// `sdp` is our current session description, repeated unchanged on a re-INVITE.
    pub fn answer(&self, req: &Request, sdp: &str) -> Option<String> {
        let msg = SipMessage::Request(req.clone());
        if req.method == Method::Ack {
            return None;
        }
        let ours = message::to_tag(&msg);
        let theirs = message::from_tag(&msg);
        if ours.as_deref() != Some(self.local_tag.as_str())
            || (self.remote_tag.is_some() && theirs != self.remote_tag)
        {
            return Some(encode(response_to(
                req,
                481,
                "Call/Transaction Does Not Exist",
                None,
            )));
        }
        let mut ok = response_to(req, 200, "OK", None);
        match req.method {
            Method::Bye => {}
            Method::Options | Method::Update if req.body.is_empty() => {
                ok.headers.push(header("Allow", ALLOW));
            }
            Method::Invite | Method::Update => {
                ok.headers.push(header("Contact", self.local.contact()));
                ok.headers.push(header("Allow", ALLOW));
                ok.headers.push(header("Content-Type", "application/sdp"));
                ok.body = sdp.as_bytes().to_vec();
            }
            _ => return Some(encode(response_to(req, 501, "Not Implemented", None))),
        }
        Some(encode(ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::sip::message::{branch, cseq, parse};
    use crate::call::Caller;
    use rsip::headers::{ToTypedHeader, UntypedHeader};
    use rsip::prelude::HeadersExt;

    fn local() -> Local {
        Local {
            hostport: "127.0.0.1:5060".into(),
            transport: "UDP",
            from_uri: "sip:robot@robot.test".into(),
            caller: None,
            user_agent: None,
            proxy_route: None,
        }
    }

    fn route(m: &SipMessage) -> Option<String> {
        m.route_header().map(|r| r.value().to_string())
    }

    fn reparse(o: &Outgoing) -> SipMessage {
        parse(&o.bytes).expect("our own requests parse").msg
    }

    fn fixture(name: &str) -> SipMessage {
        let path = format!("{}/fixtures/sip/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(path).expect("fixture");
        parse(text.replace("\r\n", "\n").replace('\n', "\r\n").as_bytes())
            .expect("parses")
            .msg
    }

    #[test]
    fn the_invite_carries_every_mandatory_header_and_a_magic_cookie_branch() {
        let mut d = Dialog::new(local(), "sip:agence@127.0.0.1:5081");
        let inv = d.invite("v=0\r\n", &[]).expect("builds");
        let m = reparse(&inv);
        assert!(branch(&m).is_some_and(|b| b.starts_with("z9hG4bK") && b.len() > 12));
        assert!(message::vias(&m)
            .next()
            .is_some_and(|v| v.value().contains(";rport")));
        assert_eq!(
            m.max_forwards_header().map(|h| h.value().to_string()).ok(),
            Some("70".into())
        );
        assert_eq!(cseq(&m), Some((1, Method::Invite)));
        assert!(message::from_tag(&m).is_some() && message::to_tag(&m).is_none());
        assert_eq!(
            message::contact_uri(&m).as_deref(),
            Some("sip:robot@127.0.0.1:5060")
        );
        assert_eq!(m.body().as_slice(), b"v=0\r\n");
        let again = d
            .invite("v=0\r\n", &[("Authorization", "Digest x".into())])
            .expect("builds");
        assert_ne!(again.branch, inv.branch, "each INVITE is a new transaction");
        assert_eq!(cseq(&reparse(&again)), Some((2, Method::Invite)));
    }

    #[test]
    fn ack_for_a_failure_reuses_the_invite_branch_and_the_response_to_tag() {
        let mut d = Dialog::new(local(), "sip:agence@127.0.0.1:5081");
        let inv = d.invite("v=0\r\n", &[]).expect("builds");
        let busy = fixture("486-busy.txt");
        let ack = reparse(&d.ack_for_failure(&inv, &busy).expect("builds"));
        assert_eq!(branch(&ack), Some(inv.branch.clone()));
        assert_eq!(cseq(&ack), Some((1, Method::Ack)));
        assert_eq!(message::to_tag(&ack).as_deref(), Some("b77"));
    }

    #[test]
    fn ack_for_2xx_goes_to_the_contact_with_a_new_branch_and_the_route_set() {
        let mut d = Dialog::new(local(), "sip:agence@127.0.0.1:5081");
        let inv = d.invite("v=0\r\n", &[]).expect("builds");
        d.confirm(&fixture("200-ok-sdp.txt"));
        let ack_out = d.ack_for_success().expect("builds");
        assert_eq!(ack_out.request_uri, "sip:uas@127.0.0.1:5081;transport=udp");
        let ack = reparse(&ack_out);
        assert_ne!(branch(&ack), Some(inv.branch));
        assert_eq!(cseq(&ack), Some((1, Method::Ack)));
        assert_eq!(message::to_tag(&ack).as_deref(), Some("a6c85cf"));
        assert_eq!(route(&ack).as_deref(), Some("<sip:proxy.test;lr>"));
        let bye = reparse(&d.bye(&[]).expect("builds"));
        assert_eq!(cseq(&bye), Some((2, Method::Bye)));
    }

    #[test]
    fn cancel_matches_the_invite_it_cancels() {
        let mut d = Dialog::new(local(), "sip:agence@127.0.0.1:5081");
        let inv = d.invite("v=0\r\n", &[]).expect("builds");
        let c = reparse(&d.cancel(&inv).expect("builds"));
        assert_eq!(branch(&c), Some(inv.branch));
        assert_eq!(cseq(&c), Some((1, Method::Cancel)));
        assert!(message::to_tag(&c).is_none());
    }

    #[test]
    fn in_dialog_requests_are_answered_and_foreign_tags_get_481() {
        let mut d = Dialog::new(local(), "sip:agence@127.0.0.1:5081");
        d.invite("v=0\r\n", &[]).expect("builds");
        d.confirm(&fixture("200-ok-sdp.txt"));
        let req = |method: &str, to_tag: &str, body: &str| {
            let raw = format!(
                "{method} sip:robot@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5081;branch=z9hG4bKpeer\r\nFrom: <sip:agence@127.0.0.1:5081>;tag=a6c85cf\r\nTo: <sip:robot@robot.test>;tag={to_tag}\r\nCall-ID: {}\r\nCSeq: 7 {method}\r\nContent-Length: {}\r\n\r\n{body}",
                d.call_id,
                body.len()
            );
            match parse(raw.as_bytes()).expect("parses").msg {
                SipMessage::Request(r) => r,
                SipMessage::Response(_) => unreachable!("a request"),
            }
        };
        let tag = d.local_tag.clone();
        for m in ["BYE", "OPTIONS", "UPDATE"] {
            let a = d.answer(&req(m, &tag, ""), "SDP").expect("answered");
            assert!(a.starts_with("SIP/2.0 200 OK\r\n"), "{m}: {a}");
            assert!(a.contains(&format!("CSeq: 7 {m}")));
            // issue7 finding 3: our answers carry no Server header (nothing names the tool).
            assert!(!a.to_ascii_lowercase().contains("server:"), "{a}");
        }
        let reinvite = d
            .answer(&req("INVITE", &tag, "v=0\r\n"), "v=0 ours\r\n")
            .expect("answered");
        assert!(reinvite.starts_with("SIP/2.0 200 OK") && reinvite.ends_with("v=0 ours\r\n"));
        assert!(parse(reinvite.as_bytes()).is_ok());
        assert!(d.answer(&req("ACK", &tag, ""), "").is_none());
        let foreign = d.answer(&req("BYE", "not-ours", ""), "").expect("answered");
        assert!(foreign.starts_with("SIP/2.0 481 "));
    }

    #[test]
    fn a_loose_routing_proxy_is_preloaded_as_route() {
        let mut l = local();
        l.proxy_route = Some("sip:proxy.test:5070;lr".into());
        let mut d = Dialog::new(l, "sip:+33123456789@proxy.test;user=phone");
        let m = reparse(&d.invite("v=0\r\n", &[]).expect("builds"));
        assert_eq!(route(&m).as_deref(), Some("<sip:proxy.test:5070;lr>"));
        match m {
            SipMessage::Request(r) => {
                assert_eq!(r.uri.to_string(), "sip:+33123456789@proxy.test;user=phone")
            }
            SipMessage::Response(_) => unreachable!("a request"),
        }
    }

    fn persona_local() -> Local {
        Local {
            from_uri: "sip:trunk-account-42@trunk.example.net".into(),
            caller: Some(Caller {
                name: "Zoé \"Lou\" Martin".into(),
                number: "+33612345678".into(),
            }),
            ..local()
        }
    }

    /// issue7 finding 3: every request a phone system sees names the persona, never the tool.
    #[test]
    fn issue7_requests_name_the_persona_and_never_the_tool() {
        let mut d = Dialog::new(persona_local(), "sip:agence@127.0.0.1:5081");
        let sdp = crate::call::media::sdp::offer([127, 0, 0, 1].into(), 20000, 42);
        let inv = d.invite(&sdp, &[]).expect("builds");
        let cancel = d.cancel(&inv).expect("builds");
        d.confirm(&fixture("200-ok-sdp.txt"));
        let ack = d.ack_for_success().expect("builds");
        let bye = d.bye(&[]).expect("builds");
        for o in [&inv, &cancel, &ack, &bye] {
            let text = String::from_utf8_lossy(&o.bytes).to_lowercase();
            for word in ["mystery", "rsip", "rust", "user-agent", "server:"] {
                assert!(!text.contains(word), "{word:?} in {text}");
            }
            let m = reparse(o);
            let from = m.from_header().expect("From").typed().expect("typed From");
            assert_eq!(
                from.display_name.as_deref(),
                Some("\"Zoé \\\"Lou\\\" Martin\"")
            );
            assert_eq!(from.uri.to_string(), "sip:+33612345678@trunk.example.net");
            assert_eq!(message::from_tag(&m), Some(d.local_tag.clone()));
        }
        let m = reparse(&inv);
        assert_eq!(
            message::contact_uri(&m).as_deref(),
            Some("sip:+33612345678@127.0.0.1:5060")
        );
        assert!(String::from_utf8_lossy(&inv.bytes).contains(
            "From: \"Zoé \\\"Lou\\\" Martin\" <sip:+33612345678@trunk.example.net>;tag="
        ));
    }

    #[test]
    fn without_a_persona_phone_from_is_the_account_and_a_user_agent_only_when_configured() {
        let mut d = Dialog::new(local(), "sip:agence@127.0.0.1:5081");
        let text =
            String::from_utf8_lossy(&d.invite("v=0\r\n", &[]).expect("builds").bytes).to_string();
        assert!(text.contains("From: <sip:robot@robot.test>;tag="), "{text}");
        assert!(!text.contains("User-Agent"), "{text}");
        let mut with_ua = Dialog::new(
            Local {
                user_agent: Some("Yealink SIP-T46U 108.86.0.20".into()),
                ..local()
            },
            "sip:agence@127.0.0.1:5081",
        );
        let m = reparse(&with_ua.invite("v=0\r\n", &[]).expect("builds"));
        assert_eq!(
            m.user_agent_header().map(|u| u.value().to_string()),
            Some("Yealink SIP-T46U 108.86.0.20".into())
        );
    }

    #[test]
    fn a_display_name_is_quoted_with_its_quotes_and_backslashes_escaped() {
        assert_eq!(quoted("Zoé"), Some("\"Zoé\"".into()));
        assert_eq!(quoted("a\"b\\c"), Some("\"a\\\"b\\\\c\"".into()));
        assert_eq!(quoted(" \r\n "), None);
    }
}
