//! Host port allocation per (protocol, host IP).
