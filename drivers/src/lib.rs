//! Network drivers registered into the controller by the daemon.
