//! SIP signalling: transport → transaction → dialog, with digest auth.
