//! What kind of message a reply is: a human's answer, an automatic one, or a bounce.

use super::message::InboundMail;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailClass {
    HumanReply,
    /// Acknowledgement or out-of-office; `why` names the evidence (header or subject pattern).
    AutoReply { why: String },
    Bounce,
}

pub fn classify(_mail: &InboundMail) -> MailClass {
    todo!("email-analysis helper")
}
