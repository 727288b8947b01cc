//! iptables programming shared by drivers, applied in batches.
