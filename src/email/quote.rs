//! Only the new text of a reply counts: quoted history and signature are set apart.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyText {
    pub new_text: String,
    pub signature: Option<String>,
}

pub fn extract_reply(_text: &str) -> ReplyText {
    todo!("email-analysis helper")
}
