//! In-process userland proxy for published ports.
