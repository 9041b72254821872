//! RFC 4733 telephone-event payloads.
