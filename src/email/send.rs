//! Sends mail over SMTP (lettre): enquiries from a persona, digests from the robot.
//!
//! `send` returns the instant the server answered 250 to DATA: that is `sent_at`. TLS is always
//! verified (webpki roots plus `ca_file`); credentials never reach an error or a log.

use crate::config::{Security, SmtpConfig};
use lettre::message::{header, Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::time::Instant;
use tokio_rustls::rustls;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The server refused for good (5xx): resending would not help.
    #[error("the SMTP server refused the message: {0}")]
    Permanent(String),
    /// Refused for now, or no connection: nothing was accepted, a retry is safe.
    #[error("temporary SMTP failure: {0}")]
    Transient(String),
    /// The connection broke or timed out after the message may have been handed over: we
    /// cannot know whether it left, so it must not be sent again.
    #[error("SMTP outcome unknown: {0}")]
    Uncertain(String),
    #[error("cannot build the message: {0}")]
    Build(String),
    /// We refused the server: its certificate does not verify. Nothing was sent, and retrying
    /// would not help until the configuration (`ca_file`, host) or the server changes.
    #[error("TLS: the server's certificate is not trusted: {0}")]
    Untrusted(String),
}

impl SendError {
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            SendError::Permanent(_) | SendError::Build(_) | SendError::Untrusted(_)
        )
    }
    pub fn is_transient(&self) -> bool {
        matches!(self, SendError::Transient(_))
    }
}

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl Mailer {
    pub fn new(cfg: &SmtpConfig) -> Result<Self, SendError> {
        let tls = match cfg.security {
            Security::None => Tls::None,
            Security::StartTls => Tls::Required(tls_parameters(cfg)?),
            Security::Tls => Tls::Wrapper(tls_parameters(cfg)?),
        };
        // "dangerous" only means the builder starts without TLS: `tls` sets it right below.
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host)
            .port(cfg.port)
            .tls(tls)
            .timeout(Some(cfg.timeout));
        if let (Some(user), Some(password)) = (&cfg.username, &cfg.password) {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Ok(Self {
            transport: builder.build(),
        })
    }

    /// Sends and returns the instant of the server's 250 to DATA.
    pub async fn send(&self, message: Message) -> Result<Instant, SendError> {
        match self.transport.send(message).await {
            Ok(_) => Ok(Instant::now()),
            Err(e) => Err(classify_error(&e)),
        }
    }
}

/// Full verification (chain to a trusted root, host name or IP in the certificate) against the
/// webpki roots plus the certificates of `ca_file`. rustls checks an IP literal host against
/// the certificate's IP SANs.
fn tls_parameters(cfg: &SmtpConfig) -> Result<TlsParameters, SendError> {
    let mut builder = TlsParameters::builder(cfg.host.clone());
    if let Some(path) = &cfg.ca_file {
        let certs = crate::config::read_ca_file(path)
            .map_err(|e| SendError::Build(format!("smtp.ca_file: {e}")))?;
        for cert in certs {
            let cert = Certificate::from_der(cert.as_ref().to_vec())
                .map_err(|e| SendError::Build(format!("smtp.ca_file: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| SendError::Build(format!("TLS settings: {e}")))
}

/// The certificate problem behind an error, if that is what it is. io::Error hides its inner
/// error from `source()`, so each io::Error of the chain is opened by hand.
fn certificate_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(err) = next {
        let found = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(r) = found {
            return matches!(
                r,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            )
            .then_some(r);
        }
        next = err.source();
    }
    None
}

fn classify_error(e: &lettre::transport::smtp::Error) -> SendError {
    // `{e}` from lettre never includes credentials; the chain is kept for the visit's error.
    let text = format!("{e}");
    if let Some(cert) = certificate_error(e) {
        // An untrusted certificate does not fix itself in a minute: retrying would only send
        // later to a server we cannot authenticate. The configuration (ca_file, host) must.
        SendError::Untrusted(format!("{cert} (a private CA belongs in smtp.ca_file)"))
    } else if e.is_permanent() {
        SendError::Permanent(text)
    } else if e.is_transient() {
        SendError::Transient(text)
    } else if e.is_timeout() {
        SendError::Uncertain(text)
    } else {
        // Connection refused, TLS or protocol errors before DATA: nothing was accepted.
        SendError::Transient(text)
    }
}

/// An enquiry as a person's mail client writes it: display name, plain text, our Message-ID,
/// no header naming a tool.
pub struct Enquiry<'a> {
    pub from_name: &'a str,
    pub from_email: &'a str,
    pub to_email: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
    /// Without `<>`.
    pub message_id: &'a str,
    pub date: chrono::DateTime<chrono::Utc>,
}

pub fn build_enquiry(e: &Enquiry<'_>) -> Result<Message, SendError> {
    let from = Mailbox::new(
        Some(e.from_name.to_owned()),
        e.from_email
            .parse()
            .map_err(|x| SendError::Build(format!("From: {x}")))?,
    );
    let to: Mailbox = e
        .to_email
        .parse()
        .map_err(|x| SendError::Build(format!("To: {x}")))?;
    Message::builder()
        .from(from)
        .to(to)
        .subject(e.subject)
        .message_id(Some(format!("<{}>", e.message_id)))
        .date(std::time::SystemTime::from(e.date))
        .header(header::ContentType::TEXT_PLAIN)
        .body(e.body.to_owned())
        .map_err(|x| SendError::Build(x.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error whose source is `inner`, as lettre wraps the TLS handshake's io::Error.
    #[derive(Debug)]
    struct Wrapped(std::io::Error);
    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "connection error: {}", self.0)
        }
    }
    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_certificate_error_is_found_inside_the_io_error_that_carries_it() {
        let untrusted = Wrapped(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        let found = certificate_error(&untrusted).expect("found");
        assert!(found.to_string().contains("UnknownIssuer"), "{found}");
        let other_tls = Wrapped(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::DecryptError,
        ));
        assert!(certificate_error(&other_tls).is_none());
        let refused = Wrapped(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(certificate_error(&refused).is_none());
    }

    #[test]
    fn an_enquiry_carries_no_header_that_names_a_tool() {
        let m = build_enquiry(&Enquiry {
            from_name: "Claire Dupont",
            from_email: "claire.dupont@robot.test",
            to_email: "contact@lille.branch.test",
            subject: "Demande de devis – Lille",
            body: "Bonjour,\nJe souhaiterais un devis.\nClaire Dupont\n",
            message_id: "1234@robot.test",
            date: crate::clock::from_ms(1_764_000_000_000),
        })
        .unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        let headers = raw.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
        for tell in ["x-mailer", "user-agent", "lettre", "mystery", "rust"] {
            assert!(!headers.contains(tell), "{tell} in {headers}");
        }
        assert!(headers.contains("message-id: <1234@robot.test>"));
        assert!(headers.contains("content-type: text/plain; charset=utf-8"));
        assert!(
            headers.contains("from: \"claire dupont\" <claire.dupont@robot.test>")
                || headers.contains("from: claire dupont <claire.dupont@robot.test>")
        );
        assert_eq!(
            m.envelope().from().unwrap().to_string(),
            "claire.dupont@robot.test"
        );
    }
}
